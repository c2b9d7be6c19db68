# Mirrors cpp/include/pyrnn/version.h
cdef extern from "pyrnn/version.h" namespace "pyrnn" nogil:
    const char* version()
