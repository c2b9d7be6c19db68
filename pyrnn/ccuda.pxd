# Mirrors cuda/include/pyrnn/cuda/device.h
from libcpp.string cimport string

cdef extern from "pyrnn/cuda/device.h" namespace "pyrnn::cuda" nogil:
    int device_count() except +
    string unavailable_reason() except +
    string device_name(int device) except +
    void synchronize() except +
    void synchronize_device(int device) except +
    int runtime_version() except +
    int driver_version() except +

from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool
from libcpp.vector cimport vector
from pyrnn.crecurrent cimport RecurrentConfig, ParamInfo

cdef extern from "cuda_runtime_api.h" nogil:
    ctypedef void* cudaStream_t

# Mirrors cuda/include/pyrnn/cuda/buffer.h
cdef extern from "pyrnn/cuda/buffer.h" namespace "pyrnn::cuda" nogil:
    cdef cppclass DeviceBuffer[T]:
        DeviceBuffer()
        DeviceBuffer(size_t n) except +
        T* data()
        size_t size()

# Mirrors cuda/include/pyrnn/cuda/context.h
cdef extern from "pyrnn/cuda/context.h" namespace "pyrnn::cuda" nogil:
    cdef cppclass Context:
        @staticmethod
        Context& get(int device) except +
        cudaStream_t stream()
        cudaStream_t import_stream() except +
        int device()

# Mirrors cuda/include/pyrnn/cuda/memory.h
cdef extern from "pyrnn/cuda/memory.h" namespace "pyrnn::cuda" nogil:
    void copy_bytes(void* dst, const void* src, size_t nbytes, cudaStream_t stream) except +
    void copy_bytes(void* dst, const void* src, size_t nbytes, cudaStream_t stream,
                    int device) except +
    void permute01(void* out, const void* inp, size_t A, size_t B, size_t C, size_t elem_size,
                   int device) except +
    DeviceBuffer[unsigned char]* new_device_bytes(size_t nbytes, int device) except +
    void synchronize_stream(cudaStream_t stream, int device) except +
    int pointer_device(const void* p)

# Mirrors cuda/include/pyrnn/cuda/options.h
cdef extern from "pyrnn/cuda/options.h" namespace "pyrnn::cuda" nogil:
    cdef enum class Precision(int):
        Default "pyrnn::cuda::Precision::Default"
        Float32 "pyrnn::cuda::Precision::Float32"
        TF32 "pyrnn::cuda::Precision::TF32"
    cdef enum class RecurrentAlgo(int):
        Default "pyrnn::cuda::RecurrentAlgo::Default"
        Auto "pyrnn::cuda::RecurrentAlgo::Auto"
        Cublas "pyrnn::cuda::RecurrentAlgo::Cublas"
        Fused "pyrnn::cuda::RecurrentAlgo::Fused"
        Persistent "pyrnn::cuda::RecurrentAlgo::Persistent"
    cdef enum class Switch(int):
        Default "pyrnn::cuda::Switch::Default"
        Off "pyrnn::cuda::Switch::Off"
        On "pyrnn::cuda::Switch::On"
    cdef cppclass Options:
        Precision precision
        RecurrentAlgo algo
        Switch graphs
        Switch streams
        int persist_blocks
    Options default_options() except +
    void set_default_options(const Options& options) except +
    Options default_overrides() except +
    Options resolve(const Options& layer) except +
    const char* precision_name "pyrnn::cuda::to_string"(Precision p)
    const char* algo_name "pyrnn::cuda::to_string"(RecurrentAlgo a)
    const char* switch_name "pyrnn::cuda::to_string"(Switch s)
    Precision parse_precision(const string& s, const char* what) except +
    RecurrentAlgo parse_algo(const string& s, const char* what) except +
    Switch parse_switch(const string& s, const char* what) except +

# Mirrors cuda/include/pyrnn/cuda/recurrent.h (device pointers; lengths on the host)
cdef extern from "pyrnn/cuda/recurrent.h" namespace "pyrnn::cuda" nogil:
    cdef cppclass Recurrent[T]:
        Recurrent(const RecurrentConfig& config, int device) except +
        const RecurrentConfig& config()
        const vector[ParamInfo]& param_info()
        size_t num_parameters()
        int device()
        T* params()
        T* grads()
        void zero_grad() except +
        void reset_parameters(uint64_t seed) except +
        void copy_params_from_host(const T* src) except +
        void copy_params_to_host(T* dst) except +
        void copy_grads_from_host(const T* src) except +
        void copy_grads_to_host(T* dst) except +
        # x [T, N, C]; y [T, N, D*H]; hn/cn/h0/c0 [L*D, N, H]; lengths HOST [N] (nullable)
        void forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
                     const int64_t* lengths, int steps, int batch, bool training,
                     uint64_t seed) except +
        # dx [T, N, C]; dh0/dc0/dhn/dcn [L*D, N, H]; dy [T, N, D*H]
        void backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn,
                      const T* dcn) except +
        bool has_cache()
        int cached_steps()
        int cached_batch()
        void set_options(const Options& options) except +
        const Options& options()
        RecurrentAlgo last_forward_algo()
        RecurrentAlgo last_backward_algo()
        bool last_forward_graphs()
        bool last_backward_graphs()
        const string& graphs_disabled_reason()
