// The scalar LayerNorm loops (see norm_rows_isa.inc).
#define PYRNN_ISA_NS norm_scalar
#define PYRNN_ISA_LEVEL 0
#define PYRNN_ISA_TABLE norm_rows_scalar
#define PYRNN_ISA_ENUM ::pyrnn::CpuIsa::Scalar
#include "norm_rows_isa.inc"
