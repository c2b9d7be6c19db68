// The public C++ API of pyrnn (CPU). The CUDA backend adds <pyrnn/cuda.h>.
#pragma once
#include "pyrnn/error.h"
#include "pyrnn/layers.h"
#include "pyrnn/matrix.h"
#include "pyrnn/nn/gru.h"
#include "pyrnn/nn/lstm.h"
#include "pyrnn/nn/rnn.h"
#include "pyrnn/optim.h"
#include "pyrnn/recurrent.h"
#include "pyrnn/runtime.h"
#include "pyrnn/version.h"
