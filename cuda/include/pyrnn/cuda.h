// The CUDA backend (pyrnn::cuda, target pyrnn::cuda): device queries, buffers, contexts, kernels.
#pragma once
#include "pyrnn/cuda/buffer.h"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"
#include "pyrnn/cuda/fill.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/cuda/layers.h"
#include "pyrnn/cuda/matrix_cuda.h"
#include "pyrnn/cuda/memory.h"
#include "pyrnn/cuda/optim.h"
#include "pyrnn/cuda/recurrent.h"
