// Single source of the version: CMake and the Python build both read this line.
#pragma once
#define PYRNN_VERSION_STRING "0.1.0"
#define PYRNN_VERSION_MAJOR 0
#define PYRNN_VERSION_MINOR 1
#define PYRNN_VERSION_PATCH 0

namespace pyrnn {
inline const char* version() { return PYRNN_VERSION_STRING; }
}  // namespace pyrnn
