# Mirrors cpp/include/pyrnn/error.h. pyrnn::Error derives from std::runtime_error, so Cython's
# `except +` raises it as RuntimeError (std::bad_alloc as MemoryError).
from libcpp.string cimport string

cdef extern from "pyrnn/error.h" namespace "pyrnn" nogil:
    cdef cppclass Error:
        Error(const string&)
        const char* what()
