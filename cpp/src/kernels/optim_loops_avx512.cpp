// The avx512 optimizer loops (see optim_loops_isa.inc).
#define PYRNN_ISA_NS optim_avx512
#define PYRNN_ISA_LEVEL 2
#define PYRNN_ISA_TABLE optim_loops_avx512
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX512
#include "optim_loops_isa.inc"
