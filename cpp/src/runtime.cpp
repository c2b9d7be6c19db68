#include "pyrnn/runtime.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "pyrnn/aligned.h"
#include "pyrnn/error.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define PYRNN_X86 1
#endif

namespace pyrnn {

std::uint64_t detail::system_memory_bytes() {
  static const std::uint64_t limit = [] {
    std::uint64_t lim = std::numeric_limits<std::uint64_t>::max();
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
      lim = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
#if defined(__linux__)
    const std::uint64_t v2 = read_limit_file("/sys/fs/cgroup/memory.max");
    const std::uint64_t v1 = read_limit_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (v2 < lim) lim = v2;
    if (v1 < lim) lim = v1;
#endif
    return lim;
  }();
  return limit;
}

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::AVX2: return "avx2";
    case CpuIsa::AVX512: return "avx512";
  }
  return "unknown";
}

CpuIsa parse_isa(const std::string& name) {
  // Case and surrounding blanks are forgiven ("AVX2", " avx2" from a shell script).
  std::size_t b = 0, e = name.size();
  while (b < e && std::isspace(static_cast<unsigned char>(name[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(name[e - 1]))) --e;
  std::string key = name.substr(b, e - b);
  for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (key == "scalar") return CpuIsa::Scalar;
  if (key == "avx2") return CpuIsa::AVX2;
  if (key == "avx512") return CpuIsa::AVX512;
  throw_error("unknown CPU ISA '", name, "': expected 'scalar', 'avx2' or 'avx512'");
}

namespace {

#ifdef PYRNN_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

struct Detected {
  bool avx2 = false, avx512 = false;
  Detected() {
#ifdef PYRNN_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;     // SSE + AVX state saved by the OS
    const bool zmm_os = (xcr0 & 0xE6) == 0xE6;   // + opmask and ZMM state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const bool avx2_bit = b & (1u << 5);
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    avx2 = ymm_os && avx2_bit && fma;
    avx512 = avx2 && zmm_os && f && dq && bw && vl;
#endif
  }
};

const Detected& detected() {
  static const Detected d;
  return d;
}

// detail::cap_isa_for_tests: this copy of the library's (not in RuntimeState, whose
// construction asks isa_supported).
std::atomic<int> g_isa_cap{static_cast<int>(CpuIsa::AVX512)};

int available_cpus() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int initial_isa() {
  try {
    return static_cast<int>(default_isa());
  } catch (const Error&) {
    return -1;
  }
}

// The calling thread's pool size in libgomp as this copy of the library left it: the size of
// the last team it started (1: none). libgomp keeps team members between teams, lets go of
// the surplus when a smaller team (of 2 or more) starts, and creates them again for a larger.
int& own_last_team() {
  thread_local int last = 1;
  return last;
}

// The process-wide settings. Every copy of this library has one, and uses the one it was
// given by use_runtime_state (Python's extension modules each link a copy, but share one
// OpenMP runtime: settings and the fork rule must be one too).
struct RuntimeState {
  // -1 while PYRNN_CPU_ISA names no usable ISA: get_cpu_isa() reports why, and set_cpu_isa()
  // still works (a throwing static initialiser would rerun, and throw, on every access).
  std::atomic<int> isa{initial_isa()};
  std::atomic<int> threads{default_num_threads(std::getenv("OMP_NUM_THREADS"))};
  std::atomic<bool> team_started{false};  // a team of > 1 threads has run in this process
  std::atomic<bool> forked{false};        // ... and this process is a fork()ed child since
  std::atomic<int> threads_at_fork{0};    // the parent's thread count at its last fork()
  // One per thread for all copies (they share the thread's libgomp pool): the owner's.
  int& (*last_team)() = own_last_team;
};

RuntimeState& own_state() {
  static RuntimeState s;
  return s;
}
std::atomic<RuntimeState*> g_shared{nullptr};

RuntimeState& state() {
  RuntimeState* s = g_shared.load(std::memory_order_acquire);
  return s ? *s : own_state();
}

std::atomic<int>& isa_slot() { return state().isa; }
std::atomic<int>& threads_slot() { return state().threads; }

}  // namespace

void detail::cap_isa_for_tests(CpuIsa highest) {
  g_isa_cap.store(static_cast<int>(highest));
  state().isa.store(initial_isa());  // chosen again, as at load: PYRNN_CPU_ISA is read anew
}

void* detail::runtime_state() { return &state(); }
void detail::use_runtime_state(void* shared) {
  g_shared.store(static_cast<RuntimeState*>(shared), std::memory_order_release);
}

bool isa_supported(CpuIsa isa) {
  if (static_cast<int>(isa) > g_isa_cap.load()) return false;
  switch (isa) {
    case CpuIsa::Scalar: return true;
    case CpuIsa::AVX2: return detected().avx2;
    case CpuIsa::AVX512: return detected().avx512;
  }
  return false;
}

std::vector<CpuIsa> available_isas() {
  std::vector<CpuIsa> out{CpuIsa::Scalar};
  if (isa_supported(CpuIsa::AVX2)) out.push_back(CpuIsa::AVX2);
  if (isa_supported(CpuIsa::AVX512)) out.push_back(CpuIsa::AVX512);
  return out;
}

CpuIsa default_isa() {
  if (const char* env = std::getenv("PYRNN_CPU_ISA")) {
    const std::string value(env);
    if (value.find_first_not_of(" \t\n\r\f\v") != std::string::npos) {
      CpuIsa want;
      try {
        want = parse_isa(value);
      } catch (const Error&) {
        throw_error("PYRNN_CPU_ISA='", value, "' names no CPU ISA: expected 'scalar', 'avx2' or ",
                    "'avx512' (unset it, or choose one with set_cpu_isa)");
      }
      PYRNN_CHECK(isa_supported(want), "PYRNN_CPU_ISA='", value, "' is not supported by this ",
                  "CPU (unset it, or choose one with set_cpu_isa)");
      return want;
    }
  }
  return available_isas().back();
}

CpuIsa get_cpu_isa() {
  const int isa = isa_slot().load();
  return isa < 0 ? default_isa() : static_cast<CpuIsa>(isa);  // default_isa() throws why
}

void set_cpu_isa(CpuIsa isa) {
  PYRNN_CHECK(isa_supported(isa), "CPU ISA '", isa_name(isa), "' is not supported by this CPU");
  isa_slot().store(static_cast<int>(isa));
}

namespace {
// Threads in this process (Linux: /proc/self/stat's 20th field), 0 where unknown. Runs in
// fork's prepare handler: plain system calls into a stack buffer.
int process_threads() {
  const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // field 2, the name, may hold ' ' and ')'
  if (!p) return 0;
  int field = 2;
  for (++p; *p && field < 20; ++p)
    if (*p == ' ') ++field;
  return field == 20 ? std::atoi(p) : 0;
}

void before_fork() { state().threads_at_fork.store(process_threads()); }

// The child of a fork after an OpenMP team may have run: one thread (as PyTorch does). After
// our own team, for good: set_num_threads(n > 1) raises. Another library's team (PyTorch's, on
// the same libgomp) would hang the child's first parallel region as well, but is not known:
// a parent with any other thread (NumPy's BLAS threads count too) gives 1 as the default, and
// set_num_threads(n) may raise it again (the caller knows no such team ran). Each copy of the
// library registers these; on the shared state they are the same, idempotent, steps.
void after_fork_in_child() {
  RuntimeState& s = state();
  if (s.team_started.load()) {
    s.forked.store(true);
    s.threads.store(1);
  } else if (s.threads_at_fork.load() > 1) {
    s.threads.store(1);
  }
}
const int g_atfork = pthread_atfork(before_fork, nullptr, after_fork_in_child);
}  // namespace

bool detail::forked_child() { return state().forked.load(); }

namespace {
void* idle_thread(void*) { return nullptr; }

// libgomp's worker stack size: OMP_STACKSIZE, else GOMP_STACKSIZE (a number with an optional
// B, K, M or G suffix, K by default, as libgomp reads them); 0 (the default stack) when unset
// or invalid (libgomp then ignores it too). Read once.
std::size_t omp_stack_size() {
  static const std::size_t size = [] {
    for (const char* name : {"OMP_STACKSIZE", "GOMP_STACKSIZE"}) {
      const char* p = std::getenv(name);
      if (!p) continue;
      while (std::isspace(static_cast<unsigned char>(*p))) ++p;
      unsigned long long n = 0;
      const char* digits = p;
      for (; *p >= '0' && *p <= '9' && n < (1ULL << 50); ++p) n = n * 10 + (*p - '0');
      if (p == digits) return std::size_t(0);
      while (std::isspace(static_cast<unsigned char>(*p))) ++p;
      unsigned long long unit = 1024;
      switch (std::tolower(static_cast<unsigned char>(*p))) {
        case 'b': unit = 1; ++p; break;
        case 'k': ++p; break;
        case 'm': unit = 1ULL << 20; ++p; break;
        case 'g': unit = 1ULL << 30; ++p; break;
        default: break;
      }
      while (std::isspace(static_cast<unsigned char>(*p))) ++p;
      if (*p || n == 0 || n > (1ULL << 50) / unit) return std::size_t(0);
      return static_cast<std::size_t>(n * unit);
    }
    return std::size_t(0);
  }();
  return size;
}

// libgomp ends the process when it cannot create a team member ("libgomp: Thread creation
// failed", exit status 1: under `ulimit -v`, `ulimit -u` or a container's pids.max), which
// no caller can catch. So before a team larger than this thread's pool, the threads libgomp
// would add are started (with its stack size) and joined here, where a refusal is an error
// code: pyrnn::Error naming the count, and nothing has run. `team`: a team of that size
// starts right after (the pool is then its size); else only a check (set_num_threads: a limit
// may still come before the first team).
void check_team_can_start(int threads, bool team) {
  int& last = state().last_team();
  if (threads <= last) {
    if (team) last = threads;  // (libgomp lets the surplus go)
    return;
  }
  const int extra = threads - last;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (const std::size_t stack = omp_stack_size())
    pthread_attr_setstacksize(&attr, std::max<std::size_t>(stack, PTHREAD_STACK_MIN));
  std::vector<pthread_t> started;
  started.reserve(static_cast<std::size_t>(extra));
  int err = 0;
  for (int i = 0; i < extra && err == 0; ++i) {
    pthread_t t;
    err = pthread_create(&t, &attr, idle_thread, nullptr);
    if (err == 0) started.push_back(t);
  }
  pthread_attr_destroy(&attr);
  for (pthread_t t : started) pthread_join(t, nullptr);
  PYRNN_CHECK(err == 0, "cannot start ", threads, " threads: the system refused thread ",
              last + static_cast<int>(started.size()) + 1, " (", std::strerror(err),
              "); lower pyrnn.set_num_threads (now ", get_num_threads(), ") or raise this ",
              "process's limits (ulimit -u, ulimit -v, a container's pids.max)");
  if (team) last = threads;
}
}  // namespace

void detail::note_team(int threads) {
  if (threads <= 1) return;
  check_team_can_start(threads, true);
  RuntimeState& s = state();
  if (!s.team_started.load(std::memory_order_relaxed)) s.team_started.store(true);
}

int detail::start_team(int threads) {
  if (threads <= 1) return 1;
  const int size = std::max(threads, std::min(state().last_team(), get_num_threads()));
  note_team(size);
  return size;
}

int default_num_threads(const char* value) {
  constexpr int kMax = 4096;  // set_num_threads' bound
  if (value) {
    while (std::isspace(static_cast<unsigned char>(*value))) ++value;
    long n = 0;
    const char* p = value;
    for (; *p >= '0' && *p <= '9'; ++p) n = n < kMax ? n * 10 + (*p - '0') : n;
    while (std::isspace(static_cast<unsigned char>(*p))) ++p;
    if (p != value && (*p == '\0' || *p == ',') && n >= 1) return n < kMax ? int(n) : kMax;
  }
  return std::min(available_cpus(), kMax);
}

int get_num_threads() { return threads_slot().load(); }

void set_num_threads(int n) {
  PYRNN_CHECK(n >= 1 && n <= 4096, "num_threads must be in [1, 4096], got ", n);
  PYRNN_CHECK(n == 1 || !state().forked.load(), "set_num_threads(", n, "): this process was fork()ed ",
              "from one whose pyrnn threads had run, and OpenMP's thread pool does not survive ",
              "fork (the threads would wait forever), so pyrnn runs on 1 thread here; start ",
              "workers as fresh processes for more (fork then exec; in Python, multiprocessing's ",
              "'spawn' or 'forkserver' method)");
  check_team_can_start(n, false);  // refused now, not at the next call
  threads_slot().store(n);
}

WaitPolicy wait_policy_of(const char* value) {
  if (!value) return WaitPolicy::Spin;
  while (std::isspace(static_cast<unsigned char>(*value))) ++value;
  // A shorter value stops at its terminating '\0', which matches no letter.
  for (const char* want = "passive"; *want; ++want, ++value)
    if (std::tolower(static_cast<unsigned char>(*value)) != *want) return WaitPolicy::Spin;
  while (std::isspace(static_cast<unsigned char>(*value))) ++value;
  return *value ? WaitPolicy::Spin : WaitPolicy::Passive;
}

namespace {
// Read at load time, before any thread of ours could race a setenv from the embedding program.
const WaitPolicy g_wait_policy = wait_policy_of(std::getenv("OMP_WAIT_POLICY"));
}  // namespace

WaitPolicy cpu_wait_policy() { return g_wait_policy; }

const char* wait_policy_name(WaitPolicy policy) {
  return policy == WaitPolicy::Passive ? "passive" : "spin";
}

}  // namespace pyrnn
