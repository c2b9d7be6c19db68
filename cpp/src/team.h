// Contiguous shares of a loop for an OpenMP team (internal to the core's .cpp files): the
// GEMMs' panels (kernels/), the step loops' rows and units (recurrent.cpp), the element-wise and
// row-wise passes of the training stack (layers.cpp) and the optimizer steps (optim.cpp). A
// share depends on the team size only through its bounds, never the arithmetic inside it, so
// these loops give the same bits at any thread count.
#pragma once
#include <algorithm>
#include <cstddef>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "pyrnn/runtime.h"
#include "team_errors.h"

namespace pyrnn {
namespace detail {

inline int team_member() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// The members of the current team that share work meant for `threads`: the team, at most
// `threads` (start_team may start more, OpenMP may give fewer).
inline int sharers(int threads) { return std::min(threads, team_size()); }

// Member `me`'s contiguous share of n items split among `parts` members, its bounds multiples
// of `grain` (but the last); empty for a member from `parts` on (start_team's extra members).
// In size_t: units * me overflowed int for 2^28 row blocks among 4096 threads.
struct Span {
  std::size_t begin, end;
};
inline Span share(std::size_t n, int me, int parts, std::size_t grain = 1) {
  if (me >= parts) return {n, n};
  const std::size_t units = (n + grain - 1) / grain, team = static_cast<std::size_t>(parts);
  const std::size_t u0 = units * me / team, u1 = units * (me + 1) / team;
  return {std::min(n, u0 * grain), std::min(n, u1 * grain)};
}

// f(begin, end) over [0, n) in `nth` contiguous shares (multiples of grain), one per member of a
// team; a plain call when nth is 1. Element-wise and row-wise loops give the same bits in any
// split; so do column sums split by columns (each column still over the rows in order).
template <typename F>
void for_shares(std::size_t n, int nth, std::size_t grain, F&& f) {
  if (nth <= 1) return f(std::size_t(0), n);
  const int size = start_team(nth);
#pragma omp parallel num_threads(size)
  {
    const int me = team_member(), parts = sharers(nth);
    if (me < parts) {
      const Span s = share(n, me, parts, grain);
      TeamWork work;
      f(s.begin, s.end);
    }
  }
}

}  // namespace detail
}  // namespace pyrnn
