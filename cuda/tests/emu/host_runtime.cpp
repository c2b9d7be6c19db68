// A host emulation of the little of the CUDA runtime, cuBLAS and the pyrnn::cuda foundation that
// cuda::Recurrent and the GPU facade use, so their REAL orchestration code (recurrent.cu,
// matrix_cuda.cu, nn_cuda.cu, compiled as C++) runs on the CPU against pyrnn::Recurrent without
// a GPU: "device" memory is host memory, copies are memcpy, the GEMM is gemm_reference, and the
// kernels run their cell_elems.cuh bodies (and mirrored helper loops) over every element.
// Stream capture is emulated too: while a capture is open every operation is recorded (by
// value, as a kernel's arguments are) instead of run, and a graph launch replays the record, so
// the graph bookkeeping of recurrent.cu (keys, staging buffers, fallback) is checked as well.
// The custom step kernels (step_body.cuh) run with one host thread per GPU thread and real
// block / grid barriers, on a small emulated device (3 multiprocessors, 2 threads per block,
// 4-wide K tiles, 2-row tiles) so every partition and tiling path is taken at test sizes.
// Linked into pyrnn._cuda (PYRNN_CUDA_HOST_EMULATION), it runs the Python GPU tests too: device
// allocations are tracked, so cudaPointerGetAttributes tells them from host memory.
// The runtime's per-thread state is kept as CUDA 12+ documents it: the current device (0 until
// set), the last-error slot (set by a failing call, read and reset by cudaGetLastError) and
// the primary contexts (created by cudaSetDevice or the first call that needs one on the current
// device; cuDevicePrimaryCtxGetState, through cudaGetDriverEntryPointByVersion, reports them).
// Streams are asynchronous as on a device: each queues its work, which runs only when waited
// for (see "streams" below), so a missing event or synchronization gives wrong results here.
// What this cannot check: launch configurations, cuBLAS's argument mapping (gemm.cu), work
// overlapping in time, and memory-model subtleties of the GPU (L1 vs L2); the GPU session
// checks those (cuda/tests/test_cuda.cpp on a device, compute-sanitizer).
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cell_elems.cuh"
#include "cells.cuh"
#include "device_lock.cuh"
#include "pyrnn/cuda/check.h"
#include "pyrnn/cuda/context.h"
#include "pyrnn/cuda/device.h"
#include "pyrnn/cuda/gemm.h"
#include "pyrnn/error.h"
#include "pyrnn/random.h"
#include "step_body.cuh"

// ---- stream capture: a tape of recorded operations -------------------------------------------
namespace pyrnn {
namespace cuda {
namespace emu {
namespace {
using Tape = std::vector<std::function<void()>>;
// Per thread, as recurrent.cu's cudaStreamCaptureModeThreadLocal captures: another thread's
// copies and allocations (pyrnn._cuda's DeviceArrays) neither land in nor break a capture.
thread_local bool g_capturing = false;
thread_local Tape g_tape;
std::atomic<bool> g_fail_capture{false};
std::atomic<long> g_captures{0}, g_graph_launches{0};
}  // namespace
// Test hooks (declared in tests/test_cuda.cpp): make captures fail; count captures and replays.
void set_capture_failure(bool fail) { g_fail_capture = fail; }
long captures() { return g_captures; }
long graph_launches() { return g_graph_launches; }
// Live "device" allocations (start -> bytes), so cudaPointerGetAttributes can tell device memory
// from host memory as the driver does, and pyrnn's refusal of host pointers is exercised.
std::mutex g_alloc_mutex;
struct Alloc {
  std::size_t bytes;
  int device;
};
std::map<std::uintptr_t, Alloc> g_allocs;
std::size_t g_live_bytes = 0;  // the sum of g_allocs' bytes
std::size_t g_memory_limit = 0;  // the emulated device's memory; 0: the host's
// Test hook (declared in tests/test_cuda.cpp): a device of `bytes` bytes (0: no limit), so a
// cudaMalloc past it fails with cudaErrorMemoryAllocation, as on a device, without the host
// allocating it.
void set_memory_limit(std::size_t bytes) {
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  g_memory_limit = bytes;
}
// For pyrnn._cuda's tests (through ctypes, as the pyrnn_emu_* below): the number and
// bytes of "device" allocations not yet freed, which only leaks or live objects hold (the
// emulated Context keeps no memory).
extern "C" __attribute__((visibility("default"))) void pyrnn_emu_live_allocations(
    std::size_t* count, std::size_t* bytes) {
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  *count = g_allocs.size();
  *bytes = 0;
  for (const auto& a : g_allocs) *bytes += a.second.bytes;
}
// Devices: one, "host emulation"; a test can make a second one reachable through the runtime
// calls (cudaSetDevice, cudaMalloc, copies: not Context, which stays device 0) to check what
// pyrnn does to the current device and to primary contexts.
constexpr int kMaxDevices = 2;
std::atomic<int> g_devices{1};
thread_local int g_current = 0;  // the runtime's current device: per thread, 0 until set
thread_local cudaError_t g_last_error = cudaSuccess;
std::atomic<bool> g_context[kMaxDevices];  // primary context active
std::atomic<long> g_set_device_calls[kMaxDevices];
std::atomic<bool> g_fail_set_device{false};
// Test hooks (declared in tests/test_cuda.cpp): `count` devices with no primary context and
// nothing counted yet, as in a process that has not used CUDA (the calling thread's current
// device left as it is); whether `device` has an active primary context; cudaSetDevice calls
// that made `device` current; make every cudaSetDevice fail.
void reset_devices(int count) {
  g_devices = count < 1 ? 1 : count > kMaxDevices ? kMaxDevices : count;
  for (int d = 0; d < kMaxDevices; ++d) g_context[d] = false, g_set_device_calls[d] = 0;
}
bool primary_context_active(int device) { return g_context[device]; }
long set_device_calls(int device) { return g_set_device_calls[device]; }
void set_device_failure(bool fail) { g_fail_set_device = fail; }
// A runtime call that needs a context: the current device's primary context is created.
void use_context() { g_context[g_current] = true; }
// A failing runtime call: the error is also left in the thread's slot for cudaGetLastError.
cudaError_t fail(cudaError_t err) {
  g_last_error = err;
  return err;
}
// ---- streams: a queue each, run when waited for ------------------------------------------------
// A GPU runs each stream's work in order, later than the host queued it, and streams apart from
// one another unless an event or a synchronization orders them. To catch a missing one, every
// operation is queued on its stream and runs only when something waits for that stream:
// cudaStreamSynchronize, another stream reaching a cudaStreamWaitEvent on it, a device
// synchronize, or cudaFree (which waits for the device). The legacy default stream (0 or 0x1) is
// one more queue: pyrnn's streams are non-blocking, so nothing orders them with it implicitly.
// PYRNN_EMU_EAGER=<digits> runs the named streams' work at once instead (0 legacy, 1 main,
// 2 side, 3 import), for other interleavings.
thread_local cudaStream_t g_capture_stream = nullptr;
struct StreamQueue {
  std::deque<std::function<void()>> ops;
  unsigned long long queued = 0, done = 0;  // operations ever queued / run
};
std::recursive_mutex g_queue_mutex;  // recursive: a wait's flush runs inside another flush
std::map<cudaStream_t, StreamQueue>& queues() {
  static auto* q = new std::map<cudaStream_t, StreamQueue>();  // never destroyed (exit order)
  return *q;
}
cudaStream_t legacy_stream() { return reinterpret_cast<cudaStream_t>(0x1); }
cudaStream_t norm(cudaStream_t s) { return s ? s : legacy_stream(); }
// Runs `s`'s operations up to the `upto`-th ever queued.
void flush(cudaStream_t s, unsigned long long upto) {
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  StreamQueue& q = queues()[norm(s)];
  while (q.done < upto && !q.ops.empty()) {
    std::function<void()> op = std::move(q.ops.front());
    q.ops.pop_front();
    ++q.done;
    op();
  }
}
void flush_stream(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  flush(s, queues()[norm(s)].queued);
}
void flush_all() {
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  for (bool again = true; again;) {
    again = false;
    for (auto& kv : queues())
      if (kv.second.done < kv.second.queued) {
        flush(kv.first, kv.second.queued);
        again = true;
      }
  }
}
unsigned long long pending() {
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  unsigned long long n = 0;
  for (auto& kv : queues()) n += kv.second.queued - kv.second.done;
  return n;
}
int stream_id(cudaStream_t s);  // with the emulated Context's streams, below
bool eager(cudaStream_t s) {
  static const std::string ids = [] {
    const char* e = std::getenv("PYRNN_EMU_EAGER");
    return std::string(e ? e : "");
  }();
  const int id = stream_id(s);
  return id >= 0 && ids.find(char('0' + id)) != std::string::npos;
}
unsigned long long enqueue(cudaStream_t s, std::function<void()> op) {
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  StreamQueue& q = queues()[norm(s)];
  q.ops.push_back(std::move(op));
  const unsigned long long n = ++q.queued;
  if (eager(norm(s))) flush(s, n);
  return n;
}
// Queues an operation on `stream`, or records it while this thread captures. Work for another
// stream during a capture is a pyrnn bug today (it would run outside the graph, unordered with
// it): the test process stops there, naming it. (CUDA can capture across streams joined by
// events; pyrnn captures one lane at a time, and this emulation models only that.)
void run_or_record(cudaStream_t stream, std::function<void()> op) {
  if (g_capturing) {
    if (norm(stream) != norm(g_capture_stream)) {
      std::fprintf(stderr, "host emulation: work on stream %p queued while capturing stream %p\n",
                   static_cast<void*>(stream), static_cast<void*>(g_capture_stream));
      std::abort();
    }
    g_tape.push_back(std::move(op));
    return;
  }
  enqueue(stream, std::move(op));
}
unsigned long long enqueue_or_record(cudaStream_t stream, std::function<void()> op) {
  if (g_capturing) {
    run_or_record(stream, std::move(op));
    return 0;
  }
  return enqueue(stream, std::move(op));
}
bool is_device_ptr(const void* ptr) {
  const auto u = reinterpret_cast<std::uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  auto it = g_allocs.upper_bound(u);
  return it != g_allocs.begin() && u < std::prev(it)->first + std::prev(it)->second.bytes;
}
}  // namespace emu
}  // namespace cuda
}  // namespace pyrnn

using pyrnn::cuda::emu::run_or_record;

// For pyrnn._cuda's tests (ctypes): operations queued and not yet run, on every stream. Every
// pyrnn call waits for its own work, so this is 0 between calls unless one left work behind.
extern "C" __attribute__((visibility("default"))) unsigned long long pyrnn_emu_pending() {
  return pyrnn::cuda::emu::pending();
}

// ---- CUDA runtime (host memory, streams as above) ---------------------------------------------
extern "C" {
cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t err = pyrnn::cuda::emu::g_last_error;
  pyrnn::cuda::emu::g_last_error = cudaSuccess;
  return err;
}
const char* CUDARTAPI cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
const char* CUDARTAPI cudaGetErrorString(cudaError_t) { return "host emulation error"; }
cudaError_t CUDARTAPI cudaSetDevice(int device) {
  using namespace pyrnn::cuda::emu;
  if (g_fail_set_device) return fail(cudaErrorDevicesUnavailable);
  if (device < 0 || device >= g_devices) return fail(cudaErrorInvalidDevice);
  g_current = device;
  ++g_set_device_calls[device];
  use_context();  // CUDA 12+: cudaSetDevice initializes the device's primary context
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetDevice(int* device) {  // needs no context
  *device = pyrnn::cuda::emu::g_current;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  using namespace pyrnn::cuda::emu;
  // Illegal while capturing (it would wait for work that was never launched).
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);
  use_context();
  flush_stream(stream);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMalloc(void** p, size_t size) {
  using namespace pyrnn::cuda::emu;
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);  // caught by tests
  use_context();
  const std::size_t bytes = size ? size : 1;
  {
    std::lock_guard<std::mutex> lock(g_alloc_mutex);
    if (g_memory_limit && bytes > g_memory_limit - std::min(g_live_bytes, g_memory_limit))
      return fail(cudaErrorMemoryAllocation);
  }
  // Garbage-filled like cudaMalloc, so code that reads before writing is caught by the tests.
  *p = std::malloc(bytes);
  if (!*p) return fail(cudaErrorMemoryAllocation);
  std::memset(*p, 0xA5, size);
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  g_allocs[reinterpret_cast<std::uintptr_t>(*p)] = Alloc{bytes, g_current};
  g_live_bytes += bytes;
  return cudaSuccess;
}
// Any device's memory (unified addressing), under the current device's context.
cudaError_t CUDARTAPI cudaFree(void* p) {
  using namespace pyrnn::cuda::emu;
  if (!p) return cudaSuccess;
  use_context();
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);  // unsafe in a capture
  flush_all();  // cudaFree waits for the device
  {
    std::lock_guard<std::mutex> lock(g_alloc_mutex);
    // Freeing what cudaMalloc did not return is an error, as on a device.
    const auto it = g_allocs.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == g_allocs.end()) return fail(cudaErrorInvalidValue);
    std::memset(p, 0xFF, it->second.bytes);  // a use after free reads NaN (float and double)
    g_live_bytes -= it->second.bytes;
    g_allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
// Device memory for pointers into a live cudaMalloc block, unregistered host memory otherwise.
cudaError_t CUDARTAPI cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  using namespace pyrnn::cuda::emu;
  *attr = cudaPointerAttributes{};
  attr->type = cudaMemoryTypeUnregistered;
  attr->device = -1;
  const auto u = reinterpret_cast<std::uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  auto it = g_allocs.upper_bound(u);
  if (it != g_allocs.begin() && u < std::prev(it)->first + std::prev(it)->second.bytes) {
    attr->type = cudaMemoryTypeDevice;
    attr->device = std::prev(it)->second.device;
    attr->devicePointer = const_cast<void*>(ptr);
  }
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count,
                                      enum cudaMemcpyKind kind, cudaStream_t stream) {
  using namespace pyrnn::cuda::emu;
  if (g_capturing && kind != cudaMemcpyDeviceToDevice)
    return fail(cudaErrorStreamCaptureUnsupported);  // host memory in a graph: not what we want
  if (count && (!dst || !src)) return fail(cudaErrorInvalidValue);  // as a device does
  use_context();
  if (!count) return cudaSuccess;
  const bool src_dev = is_device_ptr(src), dst_dev = is_device_ptr(dst);
  if (!src_dev && dst_dev) {
    // From pageable host memory: staged at the call, as the driver does, so the caller may
    // reuse its buffer at once.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                     static_cast<const char*>(src) + count);
    run_or_record(stream, [=] { std::memmove(dst, staged->data(), count); });
  } else {
    const unsigned long long n = enqueue_or_record(stream, [=] { std::memmove(dst, src, count); });
    // Into pageable host memory: complete when the call returns, as documented (API sync
    // behavior), the stream's earlier work with it.
    if (src_dev && !dst_dev && n) flush(stream, n);
  }
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                        size_t width, size_t height, enum cudaMemcpyKind,
                                        cudaStream_t stream) {
  if (width > dpitch || width > spitch) return pyrnn::cuda::emu::fail(cudaErrorInvalidPitchValue);
  pyrnn::cuda::emu::use_context();
  run_or_record(stream, [=] {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                   width);
  });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  if (count && !p) return pyrnn::cuda::emu::fail(cudaErrorInvalidValue);
  pyrnn::cuda::emu::use_context();
  if (count) run_or_record(stream, [=] { std::memset(p, value, count); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width,
                                        size_t height, cudaStream_t stream) {
  pyrnn::cuda::emu::use_context();
  run_or_record(stream, [=] {
    for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(p) + r * pitch, value, width);
  });
  return cudaSuccess;
}
// Events: a record notes how far its stream's queue reaches; a wait queues, on the waiting
// stream, the running of the recorded stream up to there.
struct EmuEvent {
  cudaStream_t stream = nullptr;
  unsigned long long upto = 0;
};
cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* ev, unsigned int) {
  pyrnn::cuda::emu::use_context();
  *ev = reinterpret_cast<cudaEvent_t>(new EmuEvent());
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t ev) {
  delete reinterpret_cast<EmuEvent*>(ev);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t ev, cudaStream_t stream) {
  using namespace pyrnn::cuda::emu;
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);
  auto* e = reinterpret_cast<EmuEvent*>(ev);
  e->stream = norm(stream);
  e->upto = queues()[norm(stream)].queued;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t ev, unsigned int) {
  using namespace pyrnn::cuda::emu;
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);
  std::lock_guard<std::recursive_mutex> lock(g_queue_mutex);  // (cudaEventRecord writes it)
  const auto* e = reinterpret_cast<const EmuEvent*>(ev);
  const cudaStream_t s = e->stream;
  const unsigned long long upto = e->upto;  // as recorded now: a later record does not count
  if (s && upto) enqueue(stream, [s, upto] { flush(s, upto); });
  return cudaSuccess;
}
// Graphs: a captured tape; an executable graph is a copy of it.
cudaError_t CUDARTAPI cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode) {
  using namespace pyrnn::cuda::emu;
  if (g_fail_capture) return fail(cudaErrorStreamCaptureUnsupported);
  if (g_capturing) return fail(cudaErrorIllegalState);
  use_context();
  g_capture_stream = stream;
  g_capturing = true;
  g_tape.clear();
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  using namespace pyrnn::cuda::emu;
  if (!g_capturing) return fail(cudaErrorIllegalState);
  g_capturing = false;
  *graph = reinterpret_cast<cudaGraph_t>(new Tape(std::move(g_tape)));
  g_tape.clear();
  ++g_captures;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                           unsigned long long) {
  using pyrnn::cuda::emu::Tape;
  *exec = reinterpret_cast<cudaGraphExec_t>(new Tape(*reinterpret_cast<Tape*>(graph)));
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<pyrnn::cuda::emu::Tape*>(graph);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<pyrnn::cuda::emu::Tape*>(exec);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  using namespace pyrnn::cuda::emu;
  if (g_capturing) return fail(cudaErrorStreamCaptureUnsupported);
  // A copy of the executable graph: it may be destroyed before the launch runs, as on a device.
  auto tape = std::make_shared<Tape>(*reinterpret_cast<Tape*>(exec));
  run_or_record(stream, [tape] { for (const auto& op : *tape) op(); });
  ++g_graph_launches;
  return cudaSuccess;
}
// The driver entry points: cuDevicePrimaryCtxGetState only (device_scope.cuh); other symbols
// are not found (success, a null pointer and SymbolNotFound, as documented).
static CUresult CUDAAPI emu_primary_ctx_get_state(CUdevice dev, unsigned int* flags, int* active) {
  using namespace pyrnn::cuda::emu;
  if (dev < 0 || dev >= g_devices) return CUDA_ERROR_INVALID_DEVICE;
  *flags = 0;
  *active = g_context[dev] ? 1 : 0;
  return CUDA_SUCCESS;
}
static cudaError_t entry_point(const char* symbol, void** fn,
                               cudaDriverEntryPointQueryResult* status) {
  const bool found = std::strcmp(symbol, "cuDevicePrimaryCtxGetState") == 0;
  *fn = found ? reinterpret_cast<void*>(&emu_primary_ctx_get_state) : nullptr;
  if (status) *status = found ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;
}
#if CUDART_VERSION >= 12050
cudaError_t CUDARTAPI cudaGetDriverEntryPointByVersion(const char* symbol, void** fn,
                                                       unsigned int, unsigned long long,
                                                       cudaDriverEntryPointQueryResult* status) {
  return entry_point(symbol, fn, status);
}
#else
cudaError_t CUDARTAPI cudaGetDriverEntryPoint(const char* symbol, void** fn, unsigned long long,
                                              cudaDriverEntryPointQueryResult* status) {
  return entry_point(symbol, fn, status);
}
#endif
}  // extern "C"

namespace pyrnn {
namespace cuda {

// ---- foundation ---------------------------------------------------------------------------
namespace detail {
void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // as device.cu: the error is reported here, not left behind
  throw_error(call, " failed at ", file, ":", line, ": emulated CUDA error ", int(err));
}
void throw_cublas_error(int status, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  throw_error(call, " failed at ", file, ":", line, ": emulated cuBLAS error ", status);
}
}  // namespace detail

int device_count() { return 1; }
std::string unavailable_reason() { return std::string(); }
std::string device_name(int device) {
  PYRNN_CHECK(device == 0, "CUDA device ", device, " out of range (1 device, emulated)");
  return "host emulation";
}
// Runs every stream's queue; the device's lock is taken as device.cu takes it.
void synchronize() {
  std::lock_guard<std::mutex> lock(detail::device_mutex(0));
  emu::flush_all();
}
void synchronize_device(int device) {
  if (device < 0) return synchronize();
  PYRNN_CHECK(device == 0, "CUDA device ", device, " out of range (1 device, emulated)");
  std::lock_guard<std::mutex> lock(detail::device_mutex(0));
  emu::flush_all();
}
int runtime_version() { return CUDART_VERSION; }  // the runtime headers it was built against
int driver_version() { return 0; }

// The Context's streams: three distinct handles (each its own queue), and a cuBLAS handle for
// each of the main and side streams that names its stream, as cublasSetStream binds one.
namespace emu {
struct EmuStream {
  int id;  // as PYRNN_EMU_EAGER names it
};
struct EmuBlas {
  cudaStream_t stream;
};
EmuStream g_main_stream{1}, g_side_stream{2}, g_import_stream{3};
EmuBlas g_main_blas{reinterpret_cast<cudaStream_t>(&g_main_stream)};
EmuBlas g_side_blas{reinterpret_cast<cudaStream_t>(&g_side_stream)};
int stream_id(cudaStream_t s) {
  if (s == legacy_stream()) return 0;
  for (const EmuStream* e : {&g_main_stream, &g_side_stream, &g_import_stream})
    if (s == reinterpret_cast<cudaStream_t>(const_cast<EmuStream*>(e))) return e->id;
  return -1;
}
cudaStream_t stream_of(cublasHandle_t h) {
  return h ? reinterpret_cast<EmuBlas*>(h)->stream : nullptr;
}
}  // namespace emu
Context::Context(int device) : device_(device) {
  stream_ = reinterpret_cast<cudaStream_t>(&emu::g_main_stream);
  cublas_ = reinterpret_cast<cublasHandle_t>(&emu::g_main_blas);
}
Context::~Context() { release(); }
void Context::release() noexcept {
  if (legacy_event_) (void)cudaEventDestroy(legacy_event_);
  legacy_event_ = nullptr;
}
void Context::after_legacy_stream() {  // as context.cu's, the event made on first use
  if (!legacy_event_) PYRNN_CUDA_CHECK(cudaEventCreateWithFlags(&legacy_event_, 0));
  PYRNN_CUDA_CHECK(cudaEventRecord(legacy_event_, cudaStreamLegacy));
  PYRNN_CUDA_CHECK(cudaStreamWaitEvent(stream_, legacy_event_, 0));
}
cudaStream_t Context::side_stream() { return reinterpret_cast<cudaStream_t>(&emu::g_side_stream); }
cublasHandle_t Context::side_cublas() {
  return reinterpret_cast<cublasHandle_t>(&emu::g_side_blas);
}
cudaStream_t Context::import_stream() {
  return reinterpret_cast<cudaStream_t>(&emu::g_import_stream);
}
// Host memory, as the emulated kernels write it: the Context's own memory is not counted among
// the device allocations (the real one's workspaces are not made here either).
unsigned* Context::step_flags() {
  static unsigned word;
  return &word;
}
std::mutex& Context::mutex() const { return detail::device_mutex(device_); }
Context& Context::get(int device) {
  static Context ctx(0);
  PYRNN_CHECK(device == 0, "CUDA device ", device, " out of range (1 device, emulated)");
  return ctx;
}

namespace {
// float -> TF32 (10 explicit mantissa bits), round to nearest even: what the tensor cores see.
float tf32_round(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7F800000u) == 0x7F800000u) return x;  // inf / nan
  u += 0x0FFFu + ((u >> 13) & 1u);
  u &= 0xFFFFE000u;
  std::memcpy(&x, &u, sizeof u);
  return x;
}
template <typename T>
std::vector<T> tf32_copy(const T* p, std::size_t n) {
  std::vector<T> v(p, p + n);
  for (T& e : v) e = static_cast<T>(tf32_round(static_cast<float>(e)));
  return v;
}
}  // namespace

template <typename T>
void gemm(cublasHandle_t handle, kernels::Trans ta, kernels::Trans tb, int M, int N, int K, T alpha,
          const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc, GemmMath math) {
  using kernels::Trans;
  if (M <= 0 || N <= 0) return;
  PYRNN_CHECK(ldc >= N, "cuda::gemm: ldc = ", ldc, " < N = ", N);
  if (K > 0 && alpha != T(0)) {
    PYRNN_CHECK(lda >= (ta == Trans::N ? K : M), "cuda::gemm: lda too small");
    PYRNN_CHECK(ldb >= (tb == Trans::N ? N : K), "cuda::gemm: ldb too small");
  }
  const bool tf32 = math == GemmMath::TF32 && sizeof(T) == sizeof(float) && K > 0;
  run_or_record(emu::stream_of(handle), [=] {
    if (!tf32) {
      kernels::gemm_reference<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    // Operands rounded to TF32 when the GEMM runs (their contents change between capture and
    // replay), fp32 accumulation.
    const std::size_t na = ta == Trans::N ? std::size_t(M - 1) * lda + K : std::size_t(K - 1) * lda + M;
    const std::size_t nb = tb == Trans::N ? std::size_t(K - 1) * ldb + N : std::size_t(N - 1) * ldb + K;
    const std::vector<T> a = tf32_copy(A, na), b = tf32_copy(B, nb);
    kernels::gemm_reference<T>(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, C, ldc);
  });
}
template void gemm<float>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, float,
                          const float*, int, const float*, int, float, float*, int, GemmMath);
template void gemm<double>(cublasHandle_t, kernels::Trans, kernels::Trans, int, int, int, double,
                           const double*, int, const double*, int, double, double*, int, GemmMath);

// ---- the launchers of cells.cuh, over every element -----------------------------------------
namespace detail {

namespace {
int gates_of(CellType cell) { return cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1; }
}  // namespace

template <typename T>
void cell_forward(CellType cell, bool reset_after, int N, int H, int t, const std::int64_t* lengths,
                  T* g, const T* r, const T* b_hn, const T* hp, T* hc, const T* cp, T* cc, T* aux,
                  T* y, int ldy, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
      cell_forward_elem<T>(i, int(cell), reset_after, H, gates_of(cell), t, lengths, g, r, b_hn,
                           hp, hc, cp, cc, aux, y, ldy);
  });
}
template <typename T>
void gru_before_state(int N, int H, int t, const std::int64_t* lengths, T* g, const T* rn,
                      const T* hp, T* hc, T* y, int ldy, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
      gru_before_state_elem<T>(i, H, t, lengths, g, rn, hp, hc, y, ldy);
  });
}
template <typename T>
void cell_backward(CellType cell, bool reset_after, int N, int H, int t,
                   const std::int64_t* lengths, T* dg, T* dghn, const T* dh, const T* dy, int ldy,
                   T* dc, T* pw, const T* a, const T* aux, const T* hp, const T* c, const T* cp,
                   cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
      cell_backward_elem<T>(i, int(cell), reset_after, H, gates_of(cell), t, lengths, dg, dghn,
                            dh, dy, ldy, dc, pw, a, aux, hp, c, cp);
  });
}
template <typename T>
void gru_before_backward_r(int N, int H, int t, const std::int64_t* lengths, T* dg, const T* drh,
                           T* pw, const T* a, const T* hp, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
      gru_before_backward_r_elem<T>(i, H, t, lengths, dg, drh, pw, a, hp);
  });
}
template <typename T>
void update_dh(int N, int H, int t, const std::int64_t* lengths, T* dh, const T* rec, const T* pw,
               cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < std::size_t(N) * H; ++i)
      update_dh_elem<T>(i, H, t, lengths, dh, rec, pw);
  });
}
// Mirrors of the helper kernels in cells.cu (same arithmetic order).
template <typename T>
void add_bias_rows(T* a, const T* b, std::size_t rows, int cols, int ld, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) a[r * ld + c] += b[c];
  });
}
template <typename T>
void column_sum_add(T* out, const T* a, std::size_t rows, int cols, int ld, cudaStream_t stream) {
  run_or_record(stream, [=] {
    // as column_sum_add_kernel: 8 strided partial sums in double, then in order
    constexpr int kSumY = 8;
    for (int c = 0; c < cols; ++c) {
      double part[kSumY];
      for (int y = 0; y < kSumY; ++y) {
        part[y] = 0.0;
        for (std::size_t r = y; r < rows; r += kSumY) part[y] += a[r * ld + c];
      }
      double total = part[0];
      for (int y = 1; y < kSumY; ++y) total += part[y];
      out[c] += static_cast<T>(total);
    }
  });
}
template <typename T>
void dropout_forward(T* next, T* mask, const T* in, std::size_t n, std::uint64_t seed,
                     std::uint64_t layer, double p, T scale, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) {
      const T m = uniform01(seed, layer, i) >= p ? scale : T(0);
      mask[i] = m;
      next[i] = in[i] * m;
    }
  });
}
template <typename T>
void multiply_inplace(T* a, const T* m, std::size_t n, cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < n; ++i) a[i] *= m[i];
  });
}
template <typename T>
void zero_past_lengths(T* x, const std::int64_t* lengths, std::size_t steps, int N, int C,
                       cudaStream_t stream) {
  run_or_record(stream, [=] {
    for (std::size_t i = 0; i < steps * N * C; ++i) {
      const std::size_t row = i / C;
      if (static_cast<std::int64_t>(row / N) >= lengths[row % N]) x[i] = T(0);
    }
  });
}

// ---- the custom step kernels: step_body.cuh on host threads -------------------------------

// A reusable barrier for a fixed number of threads (what __syncthreads / grid.sync() are).
class HostBarrier {
 public:
  explicit HostBarrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_;
  int count_ = 0;
  unsigned gen_ = 0;
};

// The execution context of step_body.cuh for one emulated GPU thread.
struct HostCtx {
  int block, thread, threads;
  HostBarrier* block_barrier;
  HostBarrier* grid_barrier;  // null unless the launch is cooperative
  int block_index() const { return block; }
  int thread_index() const { return thread; }
  int thread_count() const { return threads; }
  void sync_block() const { block_barrier->wait(); }
  void sync_grid() const {
    PYRNN_CHECK(grid_barrier, "step kernel: grid barrier in a launch that is not cooperative");
    grid_barrier->wait();
  }
};

// The emulated device of the step kernels: small, so test sizes take every path. With
// PYRNN_EMU_DEVICE_TILES=1 the tiles are the real planner's (cells.cu: kc = min(K, 128),
// nc = min(N, 64)) on wider blocks, so the tiling a device runs is checked here too.
struct EmuPlanShape {
  int multiprocessors, threads, kc, nc;
};

inline EmuPlanShape emu_plan_shape(int G, int N, int H, bool backward) {
  const char* tiles = std::getenv("PYRNN_EMU_DEVICE_TILES");
  if (tiles && std::string(tiles) == "1") {
    const int K = backward ? G * H : H;  // the longest sum of block_dot, as in cells.cu
    return {16, 32, std::min(K, 128), std::min(N, 64)};
  }
  return {3, 2, 4, 2};
}

template <typename T>
StepPlan plan_step_kernel(int, CellType cell, bool, int N, int H, bool backward, bool persistent,
                          int requested_blocks) {
  StepPlan plan;
  const int G = gates_of(cell);
  const EmuPlanShape emu = emu_plan_shape(G, N, H, backward);
  int blocks = 0, units = 0;
  step_blocks(N, G, H, backward, emu.threads, emu.multiprocessors, requested_blocks, &blocks,
              &units);
  plan.blocks = blocks;
  plan.threads = emu.threads;
  plan.units = units;
  plan.kc = emu.kc;
  plan.nc = emu.nc;
  plan.grid_sync = persistent ? (blocks > 1 ? 2 : 1) : 0;
  plan.smem_bytes = step_smem_elems(G, H, units, emu.kc, emu.nc, backward) * sizeof(T);
  return plan;
}

template <typename T>
void launch_step_kernel(const StepArgs<T>& a, const StepPlan& plan, bool backward,
                        cudaStream_t stream) {
  StepArgs<T> args = a;
  args.units = plan.units;
  args.kc = plan.kc;
  args.nc = plan.nc;
  args.grid_sync = plan.grid_sync;
  PYRNN_CHECK(args.grid_sync != 0 || (args.s_end - args.s_begin == 1 &&
                                      args.ph_end - args.ph_begin == 1),
              "step kernel: a launch without barriers must run one (step, phase)");
  const int nb = plan.blocks, nt = plan.threads;
  const std::size_t smem_elems = plan.smem_bytes / sizeof(T);
  run_or_record(stream, [args, nb, nt, smem_elems, backward] {
    HostBarrier grid(nb * nt);
    std::vector<std::unique_ptr<HostBarrier>> barriers;
    // Shared memory starts as NaN: a read of anything not staged first poisons the results.
    std::vector<std::vector<T>> smem;
    for (int b = 0; b < nb; ++b) {
      barriers.push_back(std::make_unique<HostBarrier>(nt));
      smem.emplace_back(smem_elems, std::numeric_limits<T>::quiet_NaN());
    }
    // Blocks of a launch without grid barriers are independent: run them one after another
    // (fewer threads at once); a cooperative launch runs all of its threads together.
    const bool together = args.grid_sync == 2;
    auto run_block_threads = [&](int b0, int b1) {
      std::vector<std::thread> threads;
      for (int b = b0; b < b1; ++b)
        for (int t = 0; t < nt; ++t)
          threads.emplace_back([&, b, t] {
            HostCtx ctx{b, t, nt, barriers[b].get(), together ? &grid : nullptr};
            try {
              if (backward) step_backward_body<T>(ctx, args, smem[b].data());
              else step_forward_body<T>(ctx, args, smem[b].data());
            } catch (const std::exception& e) {  // the others would wait forever: stop here
              std::fprintf(stderr, "emulated step kernel: %s\n", e.what());
              std::abort();
            }
          });
      for (auto& th : threads) th.join();
    };
    if (together) run_block_threads(0, nb);
    else
      for (int b = 0; b < nb; ++b) run_block_threads(b, b + 1);
  });
}

PYRNN_CELLS_INSTANTIATE(float)
PYRNN_CELLS_INSTANTIATE(double)

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn

// For pyrnn._cuda's tests (ctypes): another library's work on the legacy default stream, where
// PyTorch, CuPy and Numba queue theirs by default: a fill of n bytes, or a device-to-device copy.
extern "C" __attribute__((visibility("default"))) void pyrnn_emu_legacy_memset(void* p, int value,
                                                                               size_t n) {
  (void)cudaMemsetAsync(p, value, n, nullptr);
}
extern "C" __attribute__((visibility("default"))) void pyrnn_emu_legacy_copy(void* dst,
                                                                             const void* src,
                                                                             size_t n) {
  (void)cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, nullptr);
}
