// The avx512 kernel family (see kernels_isa.inc).
#define PYRNN_ISA_NS isa_avx512
#define PYRNN_ISA_LEVEL 2
#define PYRNN_ISA_TABLE ops_avx512
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX512
#include "pyrnn/kernels/ops_tables.h"
#include "kernels_isa.inc"
