// A barrier split in two halves, for the step loops of an OpenMP team: arrive() says "my part of
// this sync point is written", wait() blocks until every thread of the team has arrived there.
// Waiting spins (a step is tens of microseconds), then yields the core: with more threads than
// cores (several processes, say), a spinning waiter must not starve the thread it waits for.
// OMP_WAIT_POLICY=passive (runtime.h: cpu_wait_policy) skips the spinning: waiters yield for up
// to 50 us (short waits stay short), then sleep, leaving the cores to other processes. Sleeps
// double from 1 us to 1 ms (each wake-up costs CPU time, so long waits sleep long); Linux rounds
// even a 1 us sleep up to some 60-70 us of timer slack, so a wait that reaches them costs that
// much latency. (OpenMP's passive barriers block in the kernel and are woken by the last thread
// to arrive: no polling, but a system call per barrier.)
// Work that needs no other thread's results goes between the two (the next step's input
// projection, the previous step's d x and weight gradients), so a thread that finishes its part
// early keeps computing instead of idling at a barrier, and the team's hiccups (a slow core, a
// preempted vCPU) are absorbed instead of added up, step after step.
// Only the synchronisation moves: no element changes writer or summation order, so results are
// the same bits as with a plain barrier.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <thread>

#include "pyrnn/runtime.h"
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define PYRNN_SPIN_PAUSE() _mm_pause()
#else
#define PYRNN_SPIN_PAUSE() ((void)0)
#endif

namespace pyrnn {

class StepSync {
 public:
  // Room for `threads` threads; the team that uses it may be smaller (OpenMP can give fewer).
  explicit StepSync(int threads, WaitPolicy policy = cpu_wait_policy())
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
      if (policy_ == WaitPolicy::Passive) {
        wait_passive(slots_[i], mine);
        continue;
      }
      for (long spins = 0; slots_[i].count.load(std::memory_order_acquire) < mine; ++spins) {
        if (spins < kSpins) PYRNN_SPIN_PAUSE();
        else std::this_thread::yield();
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
  // Two cache lines per thread: no false sharing between counters, even with the adjacent-line
  // prefetcher that fetches lines in pairs.
  struct alignas(128) Slot {
    std::atomic<long> count{0};
  };
  // Passive: yield for up to 50 us, then sleep 1, 2, 4, ... 1024 us at a time.
  static void wait_passive(const Slot& slot, long mine) {
    if (slot.count.load(std::memory_order_acquire) >= mine) return;
    const auto yield_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    int naps = 0;
    while (slot.count.load(std::memory_order_acquire) < mine) {
      if (naps == 0 && std::chrono::steady_clock::now() < yield_until) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(1L << std::min(naps, 10)));
        ++naps;
      }
    }
  }

  std::unique_ptr<Slot[]> slots_;
  WaitPolicy policy_;
};

}  // namespace pyrnn
