# Mirrors cpp/include/pyrnn/aligned.h (the allocation guard)
from libc.stdint cimport uint64_t

cdef extern from "pyrnn/aligned.h" namespace "pyrnn" nogil:
    uint64_t memory_limit_bytes()
    void check_allocation(double nbytes, const char* what) except +

cdef extern from "pyrnn/aligned.h" namespace "pyrnn::detail" nogil:
    void inject_allocation_failure(uint64_t from_bytes)  # tests only
