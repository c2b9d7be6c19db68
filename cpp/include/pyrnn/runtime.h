// Process-wide runtime settings: which CPU kernel family runs, and how many threads.
#pragma once
#include <string>
#include <vector>

namespace pyrnn {

enum class CpuIsa { Scalar = 0, AVX2 = 1, AVX512 = 2 };

const char* isa_name(CpuIsa isa);
// Parses "scalar" | "avx2" | "avx512"; throws pyrnn::Error on anything else.
CpuIsa parse_isa(const std::string& name);

// ISAs this CPU and OS support (cpuid + xgetbv), always including Scalar.
std::vector<CpuIsa> available_isas();
bool isa_supported(CpuIsa isa);
// The best supported ISA, unless PYRNN_CPU_ISA names another (checked) one.
CpuIsa default_isa();

// Current selection; starts as default_isa(). While PYRNN_CPU_ISA names no usable ISA,
// get_cpu_isa() throws that reason until set_cpu_isa() picks one. set_cpu_isa throws if
// unsupported. parse_isa forgives case and surrounding blanks.
CpuIsa get_cpu_isa();
void set_cpu_isa(CpuIsa isa);

// Threads used by compute kernels (>= 1). Starts at default_num_threads(OMP_NUM_THREADS as the
// library is loaded). In a process
// fork()ed from one that had started threads of ours, it is 1 and set_num_threads(n > 1)
// throws: OpenMP's (libgomp's) thread pool does not survive fork, and the child's first team
// would wait for the parent's threads forever. set_num_threads(n), and a call's first team of
// n threads, first start (and join) the threads that team would add: where the system refuses
// one (ulimit -u / -v, pids.max), they throw pyrnn::Error instead of libgomp ending the process.
int get_num_threads();
void set_num_threads(int n);
// The starting thread count: an OMP_NUM_THREADS value's first entry ("4" or "4,2", blanks
// around it forgiven) when it is an integer >= 1 (capped at 4096), as OpenMP and PyTorch read
// it; otherwise (null, empty, 0, not a number) the CPUs this process may run on (its affinity
// mask, which taskset and container cpusets narrow), or the hardware concurrency where that is
// unknown.
int default_num_threads(const char* omp_num_threads);

// How the CPU step loops' per-step barrier waits (src/step_sync.h): Spin (spins briefly, then
// yields) or Passive (yields briefly, then sleeps). From OMP_WAIT_POLICY, as OpenMP's own
// barriers read it, once, when the library is loaded.
enum class WaitPolicy { Spin = 0, Passive = 1 };
// An OMP_WAIT_POLICY value: "passive" in any case (surrounding blanks ignored) is Passive;
// anything else, or null (unset), is Spin.
WaitPolicy wait_policy_of(const char* omp_wait_policy);
WaitPolicy cpu_wait_policy();
const char* wait_policy_name(WaitPolicy policy);  // "spin" | "passive"

namespace detail {
// Called just before a parallel region of exactly `threads` threads starts (for the fork rule
// at get_num_threads). Not inline: the per-ISA kernel files must not define shared inline code.
void note_team(int threads);
// The team to start for work shared by `threads` members (1: none, the caller works alone):
// the larger of `threads` and the calling thread's libgomp pool (its last team), at most
// get_num_threads(); noted as note_team does. libgomp ends the pool's surplus threads when a
// smaller team starts and creates them again for the next larger one (tens of microseconds per
// thread, and the start check above as much again): a pass whose regions differ in size (weight
// packs on 2-4 threads, a step loop on N/8, a projection on all) paid that at every change.
// The members from `threads` on have no work: a region splits by min(threads, its team), or by
// its team where extra members only get empty shares.
int start_team(int threads);
// Whether this process is a fork()ed child held to one thread (see set_num_threads).
bool forked_child();
// The settings above (ISA, threads, the fork rule) are one object per copy of this library.
// Where several copies live in one process (Python's extension modules each link one), all but
// one adopt that one's: use_runtime_state(runtime_state() of the owner), before any call.
void* runtime_state();
void use_runtime_state(void* state);
// Tests only: ISAs above `highest` count as unsupported in this copy of the library, as on a
// CPU without them, and the ISA is chosen again as at load (PYRNN_CPU_ISA included).
// CpuIsa::AVX512 lifts the cap.
void cap_isa_for_tests(CpuIsa highest);
}  // namespace detail

}  // namespace pyrnn
