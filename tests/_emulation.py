"""Whether pyrnn._cuda is the test build over the host emulation of CUDA
(PYRNN_CUDA_HOST_EMULATION=ON; `bash tests/reliability.sh cuda-emulation`): its one "device",
named "host emulation", runs the real Cython and orchestration code on the CPU, every GPU thread
as a host thread. The C++ library it installs is still the real CUDA one."""
import pyrnn
import pyrnn.cuda

EMULATED = pyrnn.cuda.is_available() and pyrnn.info()["cuda_devices"] == ["host emulation"]


def live_device_allocations():
    """(count, bytes) of the emulated device's cudaMalloc blocks not yet freed: every device
    allocation pyrnn makes (layers' buffers, workspaces, graph staging, DeviceArrays), which
    a device cannot tell pyrnn's tests. None without the emulation."""
    if not EMULATED:
        return None
    import ctypes
    lib = ctypes.CDLL(pyrnn.cuda.kernels().__file__)
    count, nbytes = ctypes.c_size_t(), ctypes.c_size_t()
    lib.pyrnn_emu_live_allocations(ctypes.byref(count), ctypes.byref(nbytes))
    return count.value, nbytes.value
