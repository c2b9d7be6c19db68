// InstanceId: a number unique to each object holding one. A copy gets a new one, a move hands it
// over. Optimizers key their state by parameter address AND the ids of the objects owning the
// parameters, so a new layer (or a replaced core) whose parameters happen to reuse freed
// addresses starts with fresh state. alive() is a handle that expires with the object (not with
// a copy, and not with a move's source): optimizers drop the state of objects that are gone,
// which they would otherwise keep for good.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

namespace pyrnn {
namespace detail {

class InstanceId {
 public:
  InstanceId() : id_(next()), alive_(token()) {}
  InstanceId(const InstanceId&) : id_(next()), alive_(token()) {}
  InstanceId& operator=(const InstanceId& o) {
    if (this != &o) {  // (a self-assignment changes nothing: optimizers keep its state)
      id_ = next();
      alive_ = token();
    }
    return *this;
  }
  InstanceId(InstanceId&& o) noexcept : id_(o.id_), alive_(std::move(o.alive_)) { o.id_ = 0; }
  InstanceId& operator=(InstanceId&& o) noexcept {
    if (this != &o) {
      id_ = o.id_;
      alive_ = std::move(o.alive_);
      o.id_ = 0;
    }
    return *this;
  }
  std::uint64_t value() const { return id_; }
  std::weak_ptr<const void> alive() const { return alive_; }

 private:
  static std::uint64_t next() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }
  static std::shared_ptr<const void> token() { return std::make_shared<char>(0); }
  std::uint64_t id_;
  std::shared_ptr<const void> alive_;  // expires with this object (a move hands it over)
};

}  // namespace detail
}  // namespace pyrnn
