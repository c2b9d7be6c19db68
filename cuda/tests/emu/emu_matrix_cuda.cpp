// The real matrix_cuda.cu, compiled as C++ against host_runtime.cpp (see there).
#include "../../src/matrix_cuda.cu"
