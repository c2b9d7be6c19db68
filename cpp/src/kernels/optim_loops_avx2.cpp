// The avx2 optimizer loops (see optim_loops_isa.inc).
#define PYRNN_ISA_NS optim_avx2
#define PYRNN_ISA_LEVEL 1
#define PYRNN_ISA_TABLE optim_loops_avx2
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX2
#include "optim_loops_isa.inc"
