// CUDA backend tests, checked against the CPU reference. Without a usable GPU: "SKIP: <reason>", exit 0.
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "pyrnn/cuda.h"
#include "pyrnn/kernels/gemm.h"

namespace {

int failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                \
    }                                                                            \
  } while (0)

#define CHECK_THROWS(expr)                                                                   \
  do {                                                                                       \
    bool thrown_ = false;                                                                    \
    try {                                                                                    \
      expr;                                                                                  \
    } catch (const pyrnn::Error&) {                                                          \
      thrown_ = true;                                                                        \
    }                                                                                        \
    if (!thrown_) {                                                                          \
      std::fprintf(stderr, "  %s:%d: %s did not throw pyrnn::Error\n", __FILE__, __LINE__, #expr); \
      ++failures;                                                                            \
    }                                                                                        \
  } while (0)

using pyrnn::cuda::Context;
using pyrnn::cuda::DeviceBuffer;
using pyrnn::kernels::Trans;

// Deterministic values in [-1, 1).
template <typename T>
std::vector<T> pattern(std::size_t n, unsigned seed) {
  std::vector<T> v(n);
  unsigned s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>((s >> 8) * (1.0 / (1u << 24)) * 2.0 - 1.0);
  }
  return v;
}

// One GPU GEMM vs gemm_reference. Leading dims are padded; beta = 0 starts C as NaN (must not
// be read). The float tolerance is far below TF32's ~1e-3 relative error: it checks true fp32.
template <typename T>
void check_gemm(Context& ctx, Trans ta, Trans tb, int M, int N, int K, T alpha, T beta) {
  const int lda = (ta == Trans::N ? K : M) + 3, ldb = (tb == Trans::N ? N : K) + 2, ldc = N + 1;
  const std::size_t na = static_cast<std::size_t>(ta == Trans::N ? M : K) * lda;
  const std::size_t nb = static_cast<std::size_t>(tb == Trans::N ? K : N) * ldb;
  const std::size_t nc = static_cast<std::size_t>(M) * ldc;
  const auto a = pattern<T>(na, 1), b = pattern<T>(nb, 2);  // [rows x ld]
  auto c = pattern<T>(nc, 3);                               // [M x ldc]
  if (beta == T(0)) c.assign(nc, std::numeric_limits<T>::quiet_NaN());
  DeviceBuffer<T> da(na), db(nb), dc(nc);
  da.copy_from_host(a.data(), na, ctx.stream());
  db.copy_from_host(b.data(), nb, ctx.stream());
  dc.copy_from_host(c.data(), nc, ctx.stream());
  pyrnn::cuda::gemm<T>(ctx.cublas(), ta, tb, M, N, K, alpha, da.data(), lda, db.data(), ldb, beta,
                       dc.data(), ldc);
  std::vector<T> got(nc);
  dc.copy_to_host(got.data(), nc, ctx.stream());
  auto want = c;
  pyrnn::kernels::gemm_reference<T>(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta,
                                    want.data(), ldc);
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  int bad = 0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      const double g = got[i * ldc + j], w = want[i * ldc + j];
      // Padding columns must be untouched (NaN == NaN there counts as untouched).
      const bool ok = j >= N ? (g == w || (std::isnan(g) && std::isnan(w)))
                             : std::fabs(g - w) <= tol * (1.0 + std::fabs(w)) * (K > 0 ? K : 1);
      bad += !ok;
    }
  if (bad) {
    std::fprintf(stderr, "  gemm<%s> ta=%c tb=%c M=%d N=%d K=%d alpha=%g beta=%g: %d mismatches\n",
                 sizeof(T) == 4 ? "float" : "double", ta == Trans::N ? 'N' : 'T',
                 tb == Trans::N ? 'N' : 'T', M, N, K, double(alpha), double(beta), bad);
    ++failures;
  }
}

template <typename T>
void test_gemm(Context& ctx) {
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T}) {
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(0.7), T(0));
      check_gemm<T>(ctx, ta, tb, 37, 29, 53, T(-1.3), T(0.5));
      check_gemm<T>(ctx, ta, tb, 1, 64, 300, T(1), T(1));
      check_gemm<T>(ctx, ta, tb, 16, 8, 0, T(1), T(0));     // K = 0: C = 0
      check_gemm<T>(ctx, ta, tb, 16, 8, 0, T(1), T(2.5));   // K = 0: C *= beta
      check_gemm<T>(ctx, ta, tb, 16, 8, 12, T(0), T(0.5));  // alpha = 0: C *= beta
    }
}

template <typename T>
void test_fill_and_buffer(Context& ctx) {
  const std::size_t n = 100003;  // not a multiple of the block size
  DeviceBuffer<T> buf(n);
  CHECK(buf.size() == n && buf.data() != nullptr);
  pyrnn::cuda::fill<T>(buf.data(), n, T(1.25), ctx.stream());
  std::vector<T> host(n, T(0));
  buf.copy_to_host(host.data(), n, ctx.stream());
  bool all = true;
  for (T x : host) all = all && x == T(1.25);
  CHECK(all);

  const auto src = pattern<T>(n, 7);
  buf.copy_from_host(src.data(), n, ctx.stream());
  DeviceBuffer<T> moved(std::move(buf));
  CHECK(buf.size() == 0 && buf.data() == nullptr);
  moved.copy_to_host(host.data(), n, ctx.stream());
  CHECK(host == src);
  moved.zero(ctx.stream());
  moved.copy_to_host(host.data(), n, ctx.stream());
  all = true;
  for (T x : host) all = all && x == T(0);
  CHECK(all);
  DeviceBuffer<T> empty;
  empty = std::move(moved);
  CHECK(empty.size() == n && moved.size() == 0);
}

void test_errors(Context& ctx) {
  DeviceBuffer<float> small(4);
  std::vector<float> host(8);
  CHECK_THROWS(small.copy_from_host(host.data(), 8));
  CHECK_THROWS(pyrnn::cuda::device_name(pyrnn::cuda::device_count()));
  CHECK_THROWS(Context::get(-1));
  // lda < K for op(A) = A.
  DeviceBuffer<float> d(64);
  CHECK_THROWS(pyrnn::cuda::gemm<float>(ctx.cublas(), Trans::N, Trans::N, 4, 4, 4, 1.f, d.data(),
                                        2, d.data(), 4, 0.f, d.data(), 4));
  // A runtime error surfaces with the call text, and is not left behind for the next check.
  try {
    PYRNN_CUDA_CHECK(cudaSetDevice(-1));
    CHECK(false);
  } catch (const pyrnn::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("cudaSetDevice(-1)") != std::string::npos);
    CHECK(msg.find("test_cuda.cpp:") != std::string::npos);
    CHECK(msg.find("cudaErrorInvalidDevice") != std::string::npos);
  }
  pyrnn::cuda::fill<float>(d.data(), d.size(), 2.f, ctx.stream());
  pyrnn::cuda::synchronize();
}

}  // namespace

int main() {
  if (pyrnn::cuda::device_count() == 0) {
    std::printf("SKIP: %s\n", pyrnn::cuda::unavailable_reason().c_str());
    return 0;
  }
  try {
    std::printf("device 0: %s (runtime %d, driver %d)\n", pyrnn::cuda::device_name(0).c_str(),
                pyrnn::cuda::runtime_version(), pyrnn::cuda::driver_version());
    CHECK(pyrnn::cuda::unavailable_reason().empty());
    Context& ctx = Context::get(0);
    CHECK(&ctx == &Context::get(0) && ctx.device() == 0);
    CHECK(ctx.stream() != nullptr && ctx.cublas() != nullptr);
    test_gemm<float>(ctx);
    test_gemm<double>(ctx);
    test_fill_and_buffer<float>(ctx);
    test_fill_and_buffer<double>(ctx);
    test_errors(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
  return failures ? 1 : 0;
}
