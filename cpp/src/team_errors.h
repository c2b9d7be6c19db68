// Exceptions of an OpenMP team, carried out of its parallel region (internal to the core's .cpp
// files). One thrown inside a region aborts the process (std::terminate, whatever the team
// size), so a region that may throw (an allocation: thread-private scratch) runs that part first
// on every member through run(), meets at a barrier, and then does its work only if no member
// failed(); the caller rethrows after the region. Outputs are then untouched on failure.
#pragma once
#include <atomic>
#include <cstddef>
#include <exception>
#include <vector>

#include "pyrnn/aligned.h"

namespace pyrnn {
namespace detail {

class TeamErrors {
 public:
  explicit TeamErrors(int members) : errors_(static_cast<std::size_t>(members > 0 ? members : 1)) {}

  // f() on team member `me`, keeping what it throws.
  template <typename F>
  void run(int me, F&& f) noexcept {
    try {
      f();
    } catch (...) {
      errors_[static_cast<std::size_t>(me)] = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  // Read after the barrier that follows every member's run() (the barrier orders the stores).
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  // After the region: the lowest member's exception, if any.
  void rethrow() const {
    for (const std::exception_ptr& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  std::vector<std::exception_ptr> errors_;  // [members]
  std::atomic<bool> failed_{false};
};

// Marks the calling thread as doing its team's work for a scope (after the reserve phase and
// the barrier): with PYRNN_CHECK_TEAM_ALLOCATIONS=1, a buffer allocated meanwhile aborts, naming
// itself (aligned.h), so a test finds an allocation that would otherwise throw here only when
// refused.
class TeamWork {
 public:
  TeamWork() : outer_(in_team_work()) { in_team_work() = true; }
  ~TeamWork() { in_team_work() = outer_; }
  TeamWork(const TeamWork&) = delete;
  TeamWork& operator=(const TeamWork&) = delete;

 private:
  bool outer_;
};

}  // namespace detail
}  // namespace pyrnn
