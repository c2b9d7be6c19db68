// InstanceId: a number unique to each object holding one. A copy gets a new one, a move hands it
// over. Optimizers key their state by parameter address AND the ids of the objects owning the
// parameters, so a new layer (or a replaced core) whose parameters happen to reuse freed
// addresses starts with fresh state.
#pragma once
#include <atomic>
#include <cstdint>

namespace pyrnn {
namespace detail {

class InstanceId {
 public:
  InstanceId() : id_(next()) {}
  InstanceId(const InstanceId&) : id_(next()) {}
  InstanceId& operator=(const InstanceId&) {
    id_ = next();
    return *this;
  }
  InstanceId(InstanceId&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  InstanceId& operator=(InstanceId&& o) noexcept {
    if (this != &o) {
      id_ = o.id_;
      o.id_ = 0;
    }
    return *this;
  }
  std::uint64_t value() const { return id_; }

 private:
  static std::uint64_t next() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }
  std::uint64_t id_;
};

}  // namespace detail
}  // namespace pyrnn
