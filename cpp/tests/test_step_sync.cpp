// StepSync, the split step barrier of the CPU step loops: what a thread wrote before arrive() is
// seen by every thread after wait(), nobody passes wait() before all have arrived, and waits
// end even with more threads than cores (a slow thread, oversubscription: waiters must yield).
// With OMP_WAIT_POLICY=passive the same holds, and a waiter leaves its core idle.
#include <time.h>

#include <chrono>
#include <thread>
#include <vector>

#include "../src/step_sync.h"
#include "../src/team.h"
#include "check.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

void run_rounds(int threads, int rounds, bool slow_thread,
                pyrnn::WaitPolicy policy = pyrnn::WaitPolicy::Spin) {
  pyrnn::StepSync sync(threads, policy);
  // data[s][i]: written by thread i in round s before it arrives; read by all after waiting.
  std::vector<std::vector<long>> data(rounds, std::vector<long>(threads, -1));
  std::vector<int> bad(threads, 0);
  int team_seen = 1;
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int tid = 0, team = 1;
#endif
    if (tid == 0) team_seen = team;
    for (int s = 0; s < rounds; ++s) {
      // A thread that is late now and then: the others' waits outlast the spin phase.
      if (slow_thread && tid == team - 1 && s % 16 == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      data[s][tid] = 1000L * s + tid;
      sync.arrive(tid);
      // Work between arrive and wait may not depend on the others: here, none.
      sync.wait(tid, team);
      for (int i = 0; i < team; ++i)
        if (data[s][i] != 1000L * s + i) ++bad[tid];
    }
  }
  int total = 0;
  for (int b : bad) total += b;
  CHECK(total == 0);
  CHECK(team_seen >= 1);
}

}  // namespace

TEST(step_sync_publishes_writes_and_holds_until_all_arrive) { run_rounds(2, 2000, false); }

TEST(step_sync_with_a_slow_thread) { run_rounds(2, 64, true); }

TEST(step_sync_more_threads_than_cores) {
  // 8 threads on this 2-core machine: a waiter spinning forever would starve the thread it
  // waits for; yielding after the spin phase lets the rounds finish.
  run_rounds(8, 300, false);
  run_rounds(5, 64, true);
}

TEST(step_sync_sync_is_a_whole_barrier) {
  const int threads = 3, rounds = 500;
  pyrnn::StepSync sync(threads);
  std::vector<long> counter(threads, 0);
  int bad = 0;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int tid = 0, team = 1;
#endif
    for (int s = 0; s < rounds; ++s) {
      counter[tid] = s + 1;
      sync.sync(tid, team);
      for (int i = 0; i < team; ++i)
        if (counter[i] < s + 1) ++bad;  // everybody has reached round s
      sync.sync(tid, team);            // nobody starts round s + 1 before all have checked
    }
  }
  CHECK(bad == 0);
}

TEST(step_sync_wait_policy_from_omp_wait_policy) {
  using pyrnn::WaitPolicy;
  using pyrnn::wait_policy_of;
  CHECK(wait_policy_of(nullptr) == WaitPolicy::Spin);
  CHECK(wait_policy_of("") == WaitPolicy::Spin);
  CHECK(wait_policy_of("active") == WaitPolicy::Spin);
  CHECK(wait_policy_of("ACTIVE") == WaitPolicy::Spin);
  CHECK(wait_policy_of("pass") == WaitPolicy::Spin);
  CHECK(wait_policy_of("passives") == WaitPolicy::Spin);
  CHECK(wait_policy_of("passive") == WaitPolicy::Passive);
  CHECK(wait_policy_of("PASSIVE") == WaitPolicy::Passive);
  CHECK(wait_policy_of(" Passive\n") == WaitPolicy::Passive);
}

TEST(step_sync_passive_policy_is_still_a_barrier) {
  run_rounds(2, 500, false, pyrnn::WaitPolicy::Passive);
  run_rounds(2, 32, true, pyrnn::WaitPolicy::Passive);
  run_rounds(5, 64, false, pyrnn::WaitPolicy::Passive);
}

namespace {
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
}  // namespace

TEST(step_sync_passive_waiter_leaves_the_core_idle) {
  // Thread 1 arrives 300 ms late. A spinning (then yielding) waiter burns about all of that on
  // its core; a passive one sleeps through most of it.
  pyrnn::StepSync sync(2, pyrnn::WaitPolicy::Passive);
  double waiter_cpu = -1.0;
  std::thread waiter([&] {
    const double c0 = thread_cpu_seconds();
    sync.sync(0, 2);
    waiter_cpu = thread_cpu_seconds() - c0;
  });
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sync.sync(1, 2);
  });
  waiter.join();
  late.join();
  CHECK(waiter_cpu >= 0.0);
  CHECK(waiter_cpu < 0.15);
}

// The split of batch rows (or unit panels) among a team (team.h's share, which the step loops
// and the GEMMs use): every part in order, whole grains, the parts covering [0, count) exactly,
// members past the team empty; also where blocks * part passes INT_MAX (2^28 blocks of 8 rows
// among 4096 threads; in int the last parts started at negative values and lost their rows).
TEST(share_splits_large_counts_exactly) {
  using pyrnn::detail::share;
  const std::size_t counts[] = {1, 7, 1000, 1 << 22, 1 << 28, 268435455, std::size_t(1) << 31};
  const int teams[] = {1, 2, 3, 128, 4096};
  const std::size_t grains[] = {1, 8};
  for (std::size_t count : counts)
    for (int team : teams)
      for (std::size_t grain : grains) {
        const std::size_t units = (count + grain - 1) / grain;
        CHECK(share(count, 0, team, grain).begin == 0);
        CHECK(share(count, team - 1, team, grain).end == count);
        CHECK(share(count, team, team, grain).begin == count);
        CHECK(share(count, team, team, grain).end == count);
        for (int p = 0; p < team; ++p) {
          const pyrnn::detail::Span a = share(count, p, team, grain);
          CHECK(a.begin <= a.end && a.end - a.begin <= (units / team + 1) * grain);
          CHECK(a.begin % grain == 0);
          if (p + 1 < team) CHECK(a.end == share(count, p + 1, team, grain).begin);
        }
      }
  CHECK(share(std::size_t(8) << 28, 4095, 4096, 8).begin == std::size_t(8) * ((1 << 28) - (1 << 16)));
}
