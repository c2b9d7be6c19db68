// The real recurrent.cu, compiled as C++ against host_runtime.cpp (see there).
#include "../../src/recurrent.cu"
