# Mirrors cuda/include/pyrnn/cuda/device.h
from libcpp.string cimport string

cdef extern from "pyrnn/cuda/device.h" namespace "pyrnn::cuda" nogil:
    int device_count() except +
    string unavailable_reason() except +
    string device_name(int device) except +
    void synchronize() except +
    int runtime_version() except +
    int driver_version() except +
