// The real nn_cuda.cu, compiled as C++ against host_runtime.cpp (see there).
#include "../../src/nn_cuda.cu"
