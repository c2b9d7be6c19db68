// The real optim.cu, compiled as C++ against host_runtime.cpp + emu_train_kernels.cpp.
#include "../../src/optim.cu"
