// The avx2 kernel family (see kernels_isa.inc).
#define PYRNN_ISA_NS isa_avx2
#define PYRNN_ISA_LEVEL 1
#define PYRNN_ISA_TABLE ops_avx2
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::AVX2
#include "pyrnn/kernels/ops_tables.h"
#include "kernels_isa.inc"
