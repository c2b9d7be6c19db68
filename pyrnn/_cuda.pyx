# cython: language_level=3
"""CUDA backend of pyrnn (loaded lazily by pyrnn.cuda): device queries for now."""
from pyrnn cimport ccuda


def device_count():
    return ccuda.device_count()

def unavailable_reason():
    r = ccuda.unavailable_reason().decode()
    return r or None

def device_name(int device):
    return ccuda.device_name(device).decode()

def synchronize():
    with nogil:
        ccuda.synchronize()

def runtime_version():
    return ccuda.runtime_version()

def driver_version():
    return ccuda.driver_version()
