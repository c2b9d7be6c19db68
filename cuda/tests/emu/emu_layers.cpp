// The real layers.cu, compiled as C++ against host_runtime.cpp + emu_train_kernels.cpp.
#include "../../src/layers.cu"
