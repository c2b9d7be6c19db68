// The avx2 LayerNorm loops (see norm_rows_isa.inc).
#define PYRNN_ISA_NS norm_avx2
#define PYRNN_ISA_LEVEL 1
#define PYRNN_ISA_TABLE norm_rows_avx2
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX2
#include "norm_rows_isa.inc"
