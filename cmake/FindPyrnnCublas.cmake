# Finds nvcc and cuBLAS for the CUDA backend. Sets PYRNN_CUDA_FOUND, PYRNN_CUBLAS_LIBRARY and the
# imported target pyrnn_cublas, or PYRNN_CUDA_MISSING with the reason.
# cuBLAS comes from the CUDA toolkit, or from the nvidia-cublas wheel (PYRNN_CUBLAS_ROOT), whose
# lib/ holds only the versioned libcublas.so.N.
include(CheckLanguage)
set(PYRNN_CUDA_FOUND OFF)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  set(PYRNN_CUDA_MISSING "no CUDA compiler (nvcc) found")
  return()
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90")
endif()
enable_language(CUDA)
find_package(CUDAToolkit QUIET)

set(_hints "")
if(PYRNN_CUBLAS_ROOT)
  list(APPEND _hints "${PYRNN_CUBLAS_ROOT}")
endif()
if(CUDAToolkit_FOUND)
  list(APPEND _hints "${CUDAToolkit_LIBRARY_ROOT}" "${CUDAToolkit_TARGET_DIR}")
endif()
find_path(PYRNN_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_hints} ${CUDAToolkit_INCLUDE_DIRS}
          PATH_SUFFIXES include NO_CACHE)
find_library(PYRNN_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12
             HINTS ${_hints} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64 NO_CACHE)
if(NOT PYRNN_CUBLAS_INCLUDE_DIR OR NOT PYRNN_CUBLAS_LIBRARY)
  set(PYRNN_CUDA_MISSING "cuBLAS not found (set PYRNN_CUBLAS_ROOT, e.g. to site-packages/nvidia/cu13 of the nvidia-cublas wheel)")
  return()
endif()
if(NOT TARGET pyrnn_cublas)
  add_library(pyrnn_cublas INTERFACE IMPORTED)
  set_target_properties(pyrnn_cublas PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${PYRNN_CUBLAS_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${PYRNN_CUBLAS_LIBRARY}")
endif()
set(PYRNN_CUDA_FOUND ON)
