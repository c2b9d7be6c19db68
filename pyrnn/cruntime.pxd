# Mirrors cpp/include/pyrnn/runtime.h
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "pyrnn/runtime.h" namespace "pyrnn" nogil:
    cdef enum class CpuIsa(int):
        Scalar
        AVX2
        AVX512
    const char* isa_name(CpuIsa isa)
    CpuIsa parse_isa(const string& name) except +
    vector[CpuIsa] available_isas() except +
    bint isa_supported(CpuIsa isa)
    CpuIsa get_cpu_isa() except +
    void set_cpu_isa(CpuIsa isa) except +
    int get_num_threads() except +
    void set_num_threads(int n) except +
    cdef enum class WaitPolicy(int):
        Spin
        Passive
    WaitPolicy cpu_wait_policy()
    const char* wait_policy_name(WaitPolicy policy)

cdef extern from "pyrnn/runtime.h" namespace "pyrnn::detail" nogil:
    void* runtime_state()
    void use_runtime_state(void* state)
    void cap_isa_for_tests(CpuIsa highest)

cdef extern from "pyrnn/kernels/peak.h" namespace "pyrnn::kernels" nogil:
    double fma_peak_gflops(int threads, double seconds) except +
