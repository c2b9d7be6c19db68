// 64-byte aligned owning buffer: one cache line, and the widest SIMD load (AVX-512).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "pyrnn/error.h"

namespace pyrnn {

constexpr std::size_t kAlignment = 64;

// std::bad_alloc with a message: Cython's `except +` turns it into MemoryError(what()).
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string what) : what_(detail::utf8_or_escaped(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

namespace detail {
inline std::uint64_t read_limit_file(const char* path) {
  std::uint64_t v = std::numeric_limits<std::uint64_t>::max();
  if (std::FILE* f = std::fopen(path, "r")) {
    unsigned long long x = 0;
    if (std::fscanf(f, "%llu", &x) == 1 && x > 0) v = x;  // "max" reads as nothing
    std::fclose(f);
  }
  return v;
}


// PYRNN_MEMORY_LIMIT: bytes, or a number with a K/M/G/T suffix (powers of 1024; blanks and a
// trailing "B"/"iB" allowed: "4G", "4 GiB", "512MB"). bytes = 0 if unset; ok = false for a
// value that is no positive size (check_allocation then refuses everything, naming it: a
// typo must not quietly become a limit of 5 bytes, or no limit).
struct EnvMemoryLimit {
  std::uint64_t bytes = 0;
  bool ok = true;
  std::string value;
};
inline EnvMemoryLimit parse_memory_limit(const char* env) {
  EnvMemoryLimit out;
  if (!env) return out;
  out.value = env;
  const char* p = env;
  auto blanks = [&p] {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') ++p;
  };
  blanks();
  if (!*p) return out;  // empty: unset
  // A plain decimal, read here: strtod also took hex ("0x10"), "inf" and exponents, and used
  // the C locale's decimal point ("1.5G" was refused after setlocale(LC_NUMERIC, "de_DE")).
  // One mantissa divided once by 10^decimals: exact for the usual forms ("0.0625g" is 64 MiB;
  // correctly rounded while mantissa and 10^decimals stay below 2^53). Too many digits give
  // inf or NaN, refused below.
  double mantissa = 0, divisor = 1;
  bool ok = false;
  for (; *p >= '0' && *p <= '9'; ++p, ok = true) mantissa = mantissa * 10 + (*p - '0');
  if (*p == '.')
    for (++p; *p >= '0' && *p <= '9'; ++p, ok = true) {
      mantissa = mantissa * 10 + (*p - '0');
      divisor *= 10;
    }
  const double v = mantissa / divisor;
  blanks();
  double scale = 1;
  switch (*p) {
    case 'k': case 'K': scale = 1024.0; ++p; break;
    case 'm': case 'M': scale = 1048576.0; ++p; break;
    case 'g': case 'G': scale = 1073741824.0; ++p; break;
    case 't': case 'T': scale = 1099511627776.0; ++p; break;
    default: break;
  }
  if (scale > 1 && (*p == 'i' || *p == 'I')) ++p;  // ("4GIB" was refused, "4gib" not)
  if (*p == 'b' || *p == 'B') ++p;
  blanks();
  const double bytes = v * scale;  // NaN fails both comparisons
  ok = ok && !*p && bytes >= 1 && bytes < 1.8e19;
  out.ok = ok;
  out.bytes = ok ? static_cast<std::uint64_t>(bytes) : 0;
  return out;
}
// For tests only: every AlignedBuffer allocation of at least this many bytes fails (0, the
// default: none), as one the system refuses would, so that what follows one (a failure inside
// a thread team, say) can be run on purpose. One per copy of the library (each Python
// extension module links its own: pyrnn._core's covers the recurrent layers).
inline std::atomic<std::uint64_t>& injected_allocation_failure() {
  static std::atomic<std::uint64_t> from_bytes{0};
  return from_bytes;
}
inline void inject_allocation_failure(std::uint64_t from_bytes) {
  injected_allocation_failure().store(from_bytes, std::memory_order_relaxed);
}

// Whether the calling thread is doing its OpenMP team's work (set by src/team_errors.h's
// TeamWork, after the team's reserve phase): an exception it throws there ends the process.
inline bool& in_team_work() {
  thread_local bool in_work = false;
  return in_work;
}
// For tests: PYRNN_CHECK_TEAM_ALLOCATIONS=1 (read once) makes an AlignedBuffer allocated
// during a team's work abort at once, naming it. Refused, such an allocation would end the
// process anyway, but only under memory pressure; this way every test run finds it.
inline bool check_team_allocations() {
  static const bool on = [] {
    const char* v = std::getenv("PYRNN_CHECK_TEAM_ALLOCATIONS");
    return v && v[0] == '1' && v[1] == '\0';
  }();
  return on;
}

inline const EnvMemoryLimit& env_memory_limit_parsed() {
  static const EnvMemoryLimit e = parse_memory_limit(std::getenv("PYRNN_MEMORY_LIMIT"));
  return e;
}
inline std::uint64_t env_memory_limit() { return env_memory_limit_parsed().bytes; }
}  // namespace detail

namespace detail {
// The machine's physical memory, or a smaller cgroup memory limit (v2 memory.max, v1
// memory.limit_in_bytes); read once. Defined in the library (runtime.cpp): its sysconf needs
// <unistd.h>, which this public header would otherwise hand to every user's code.
std::uint64_t system_memory_bytes();

// "12.5 GiB", "100.0 MiB", "10.0 KiB" or "512 bytes": a size in the unit that shows it.
inline std::string size_text(double bytes) {
  char buf[64];
  if (bytes >= 1073741824.0) std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / 1073741824.0);
  else if (bytes >= 1048576.0) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  else if (bytes >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f bytes", bytes);
  return buf;
}
}  // namespace detail

// Bytes this process could ever hold: system_memory_bytes(), or a smaller PYRNN_MEMORY_LIMIT
// (environment, read once, like the rest; an invalid one is ignored here and refused by
// check_allocation).
inline std::uint64_t memory_limit_bytes() {
  const std::uint64_t sys = detail::system_memory_bytes(), env = detail::env_memory_limit();
  return env && env < sys ? env : sys;
}

// Refuses (OutOfMemory, before any allocation) a request for more bytes than the machine can
// ever provide: with Linux's overcommit such a request may "succeed" and the process is
// killed later, when the pages are touched. `bytes` is a double so that callers can pass
// products that would overflow std::size_t.
inline void check_allocation(double bytes, const char* what) {
  const detail::EnvMemoryLimit& env = detail::env_memory_limit_parsed();
  if (!env.ok)
    throw OutOfMemory("PYRNN_MEMORY_LIMIT='" + env.value + "' is not a size: expected bytes or " +
                      "a number with a K, M, G or T suffix (powers of 1024), e.g. 4G (unset, the " +
                      "limit is this machine's memory); refused: " + what);
  if (!(bytes >= 0))  // NaN or negative: a caller's size computation went wrong
    throw Error(std::string(what) + ": " + std::to_string(bytes) + " bytes is not a size");
  const double limit = static_cast<double>(memory_limit_bytes());
  if (bytes > limit || bytes >= 1.8e19) {
    // Named after the limit that applies: a PYRNN_MEMORY_LIMIT above the machine's is not it.
    const std::uint64_t env_limit = detail::env_memory_limit();
    const bool by_env = env_limit && env_limit < detail::system_memory_bytes();
    throw OutOfMemory(std::string(what) + " needs " + detail::size_text(bytes) + ", more than " +
                      (by_env ? "PYRNN_MEMORY_LIMIT" : "this machine's memory") + " (" +
                      detail::size_text(limit) + ")");
  }
}

template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.size_) {
    if (size_) std::memcpy(ptr_, o.ptr_, size_ * sizeof(T));
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept { swap(o); }
  AlignedBuffer& operator=(AlignedBuffer o) noexcept {
    swap(o);
    return *this;
  }
  ~AlignedBuffer() { std::free(ptr_); }

  // A new size: zero-filled, the old contents dropped (buffers here are always rewritten). The
  // same size: nothing happens, the contents kept (a per-call scratch costs no pass over it).
  void resize(std::size_t n) {
    if (n == size_) return;
    std::free(ptr_);
    ptr_ = nullptr;
    size_ = 0;
    if (n == 0) return;
    check_allocation(static_cast<double>(n) * sizeof(T), "a buffer");
    std::size_t bytes = (n * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    if (detail::in_team_work() && detail::check_team_allocations()) {
      std::fprintf(stderr, "pyrnn: a buffer of %zu bytes was allocated during an OpenMP team's "
                           "work: reserve it before the team's barrier (src/team_errors.h)\n",
                   bytes);
      std::abort();
    }
    const std::uint64_t injected =
        detail::injected_allocation_failure().load(std::memory_order_relaxed);
    if (injected && bytes >= injected)
      throw OutOfMemory("a buffer of " + detail::size_text(static_cast<double>(bytes)) +
                        ": refused by a test (detail::injected_allocation_failure)");
    ptr_ = static_cast<T*>(std::aligned_alloc(kAlignment, bytes));
    if (!ptr_)  // (`ulimit -v`, RLIMIT_DATA, no overcommit): say how much, not "std::bad_alloc"
      throw OutOfMemory("a buffer of " + detail::size_text(static_cast<double>(bytes)) +
                        " could not be allocated: the system refused it");
    std::memset(ptr_, 0, bytes);
    size_ = n;
  }
  void zero() {
    if (size_) std::memset(ptr_, 0, size_ * sizeof(T));
  }
  void swap(AlignedBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return ptr_[i]; }
  const T& operator[](std::size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pyrnn
