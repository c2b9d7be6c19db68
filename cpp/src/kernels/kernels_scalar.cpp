// The scalar kernel family (see kernels_isa.inc).
#define PYRNN_ISA_NS isa_scalar
#define PYRNN_ISA_LEVEL 0
#define PYRNN_ISA_TABLE ops_scalar
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::Scalar
#include "pyrnn/kernels/ops_tables.h"
#include "kernels_isa.inc"
