// The scalar optimizer loops (see optim_loops_isa.inc).
#define PYRNN_ISA_NS optim_scalar
#define PYRNN_ISA_LEVEL 0
#define PYRNN_ISA_TABLE optim_loops_scalar
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::Scalar
#include "optim_loops_isa.inc"
