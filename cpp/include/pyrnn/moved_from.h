// MovedFrom: a member that tells whether its object was moved from. Moving the object (or
// self-move-assigning it) sets the source's flag; the object's calls then check it and throw a
// pyrnn::Error, instead of reaching storage that went with the move.
#pragma once
#include <utility>

#include "pyrnn/error.h"

namespace pyrnn {

class MovedFrom {
 public:
  MovedFrom() = default;
  MovedFrom(const MovedFrom&) = default;
  MovedFrom& operator=(const MovedFrom&) = default;
  MovedFrom(MovedFrom&& o) noexcept : moved_(std::exchange(o.moved_, true)) {}
  MovedFrom& operator=(MovedFrom&& o) noexcept {
    // Self-move: the members' own self-moves may have emptied them (std::vector does).
    const bool moved = std::exchange(o.moved_, true);
    moved_ = this == &o || moved;
    return *this;
  }
  explicit operator bool() const { return moved_; }
  // `what` names the call, e.g. "Recurrent::forward".
  void check(const char* what) const {
    PYRNN_CHECK(!moved_, what, ": this object was moved from (its storage went with the move)");
  }

 private:
  bool moved_ = false;
};

}  // namespace pyrnn
