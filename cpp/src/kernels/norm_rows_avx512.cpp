// The avx512 LayerNorm loops (see norm_rows_isa.inc).
#define PYRNN_ISA_NS norm_avx512
#define PYRNN_ISA_LEVEL 2
#define PYRNN_ISA_TABLE norm_rows_avx512
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX512
#include "norm_rows_isa.inc"
