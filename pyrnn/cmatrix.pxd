# Mirrors cpp/include/pyrnn/matrix.h
from libc.stddef cimport size_t

cdef extern from "pyrnn/matrix.h" namespace "pyrnn" nogil:
    cdef cppclass BasicMatrix[T]:
        BasicMatrix() except +
        BasicMatrix(size_t rows, size_t cols) except +
        size_t rows()
        size_t cols()
        T* data()
        T get(size_t r, size_t c) except +
        void set(size_t r, size_t c, T v) except +
