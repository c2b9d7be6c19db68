// A barrier split in two halves, for the step loops of an OpenMP team: arrive() says "my part of
// this sync point is written", wait() blocks until every thread of the team has arrived there.
// Waiting spins (a step is tens of microseconds), then yields the core: with more threads than
// cores (several processes, say), a spinning waiter must not starve the thread it waits for.
// OMP_WAIT_POLICY=passive (as OpenMP's own barriers read it) skips the spinning: a few yields,
// then sleeps doubling from 1 microsecond to 1 ms (each wake-up costs CPU time too, so long
// waits sleep long), so waiting threads leave the cores to others, at the price of some latency
// per step.
// Work that needs no other thread's results goes between the two (the next step's input
// projection, the previous step's d x and weight gradients), so a thread that finishes its part
// early keeps computing instead of idling at a barrier, and the team's hiccups (a slow core, a
// preempted vCPU) are absorbed instead of added up, step after step.
// Only the synchronisation moves: no element changes writer or summation order, so results are
// the same bits as with a plain barrier.
#pragma once
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <thread>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define PYRNN_SPIN_PAUSE() _mm_pause()
#else
#define PYRNN_SPIN_PAUSE() ((void)0)
#endif

namespace pyrnn {

enum class WaitPolicy { Spin, Passive };

// An OMP_WAIT_POLICY value: "passive" in any case (surrounding blanks ignored) is Passive;
// anything else, or unset (null), is Spin.
inline WaitPolicy wait_policy_of(const char* value) {
  if (!value) return WaitPolicy::Spin;
  while (std::isspace(static_cast<unsigned char>(*value))) ++value;
  const char* want = "passive";
  for (; *want; ++want, ++value)
    if (std::tolower(static_cast<unsigned char>(*value)) != *want) return WaitPolicy::Spin;
  while (std::isspace(static_cast<unsigned char>(*value))) ++value;
  return *value ? WaitPolicy::Spin : WaitPolicy::Passive;
}

// The process's OMP_WAIT_POLICY, read once (OpenMP reads it once too, at start-up).
inline WaitPolicy env_wait_policy() {
  static const WaitPolicy policy = wait_policy_of(std::getenv("OMP_WAIT_POLICY"));
  return policy;
}

class StepSync {
 public:
  // Room for `threads` threads; the team that uses it may be smaller (OpenMP can give fewer).
  explicit StepSync(int threads, WaitPolicy policy = env_wait_policy())
      : slots_(new Slot[threads > 0 ? threads : 1]), policy_(policy) {}

  // Thread tid's part of its next sync point is complete (its writes become visible to the
  // threads that wait() for that point).
  void arrive(int tid) {
    Slot& me = slots_[tid];
    me.count.store(me.count.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // Until every thread of the team [0, team) has arrived at the sync point tid last arrived at.
  void wait(int tid, int team) const {
    const long mine = slots_[tid].count.load(std::memory_order_relaxed);
    for (int i = 0; i < team; ++i) {
      if (i == tid) continue;
      for (long spins = 0; slots_[i].count.load(std::memory_order_acquire) < mine; ++spins) {
        if (policy_ == WaitPolicy::Passive) {
          if (spins < kYields) std::this_thread::yield();
          else std::this_thread::sleep_for(std::chrono::microseconds(
                   1L << std::min<long>(spins - kYields, 10)));
        } else if (spins < kSpins) {
          PYRNN_SPIN_PAUSE();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }

  // A whole barrier.
  void sync(int tid, int team) {
    arrive(tid);
    wait(tid, team);
  }

 private:
  static constexpr long kSpins = 1 << 14;  // a fraction of a millisecond of pauses, then yield
  static constexpr long kYields = 8;        // passive: before sleeping
  // Two cache lines per thread: no false sharing between counters, even with the adjacent-line
  // prefetcher that fetches lines in pairs.
  struct alignas(128) Slot {
    std::atomic<long> count{0};
  };
  std::unique_ptr<Slot[]> slots_;
  WaitPolicy policy_;
};

}  // namespace pyrnn
