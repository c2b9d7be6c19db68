# Mirrors cpp/include/pyrnn/recurrent.h
from libc.stddef cimport size_t
from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "pyrnn/recurrent.h" namespace "pyrnn" nogil:
    cdef enum class CellType(int):
        RNN_TANH
        RNN_RELU
        LSTM
        GRU

    cdef cppclass RecurrentConfig:
        CellType cell
        int input_size
        int hidden_size
        int num_layers
        bool bias
        bool bidirectional
        bool reset_after
        double dropout
        bool batch_first
        int gates()
        int directions()
        int layer_input_size(int layer)
        void validate() except +

    cdef cppclass ParamInfo:
        string name
        size_t offset
        size_t rows
        size_t cols
        size_t size()

    cdef cppclass Recurrent[T]:
        Recurrent(const RecurrentConfig& config) except +
        const RecurrentConfig& config()
        const vector[ParamInfo]& param_info()
        size_t num_parameters()
        T* params()
        T* grads()
        void zero_grad()
        void reset_parameters(uint64_t seed)
        # x [T, N, C]; y [T, N, D*H]; hn/cn/h0/c0 [L*D, N, H]; lengths [N] (nullable)
        void forward(T* y, T* hn, T* cn, const T* x, const T* h0, const T* c0,
                     const int64_t* lengths, int steps, int batch, bool training,
                     uint64_t seed) except +
        void check_forward(int steps, int batch, bint training, double caller_bytes) except +
        # dx [T, N, C]; dh0/dc0/dhn/dcn [L*D, N, H]; dy [T, N, D*H]
        void backward(T* dx, T* dh0, T* dc0, const T* dy, const T* dhn,
                      const T* dcn) except +
        bool has_cache()
        int cached_steps()
        int cached_batch()
