// The per-device lock of the CUDA backend (internal header). A device's Context (its stream,
// cuBLAS handle and workspace) is shared by every recurrent layer and every training-stack call
// on that device, and a recurrent pass may be capturing that stream into a CUDA graph: any other
// thread's work queued on the stream meanwhile would be captured into the graph (or, for a
// synchronize, invalidate the capture). So every host call that queues work on a Context stream
// holds this lock for its duration. inline: one instance per binary, whichever sources use it.
#pragma once
#include <mutex>

namespace pyrnn {
namespace cuda {
namespace detail {

inline std::mutex& device_mutex(int device) {
  static std::mutex mutexes[64];
  return mutexes[static_cast<unsigned>(device) % 64];
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
