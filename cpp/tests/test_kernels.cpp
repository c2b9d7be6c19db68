// Every kernel family against the reference: packed GEMM (all transposes, ragged sizes,
// alpha/beta, thread counts), the fast float math against libm (max relative error), and the
// multiply-add loop the FMA peak times.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <initializer_list>
#include <thread>
#include <type_traits>
#include <vector>

#include "check.h"
#include "pyrnn/aligned.h"
#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/kernels/ops.h"
#include "pyrnn/kernels/peak.h"
#include "pyrnn/random.h"
#include "pyrnn/runtime.h"

using namespace pyrnn;
using kernels::Trans;

namespace {

template <typename T>
void gemm_family(CpuIsa isa, double tol) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 512, 128}, {33, 70, 300}, {9, 17, 600}};
  std::uint64_t seed = 1;
  for (const auto& s : sizes)
    for (Trans ta : {Trans::N, Trans::T})
      for (Trans tb : {Trans::N, Trans::T})
        for (T beta : {T(0), T(1), T(0.5)}) {
          const int M = s[0], N = s[1], K = s[2];
          const int lda = (ta == Trans::N ? K : M) + 3, ldb = (tb == Trans::N ? N : K) + 2;
          const int ldc = N + 1;
          std::vector<T> A(static_cast<std::size_t>(ta == Trans::N ? M : K) * lda),
              B(static_cast<std::size_t>(tb == Trans::N ? K : N) * ldb),
              C0(static_cast<std::size_t>(M) * ldc);
          for (auto& v : A) v = T(uniform01(seed, 1, &v - A.data()) - 0.5);
          for (auto& v : B) v = T(uniform01(seed, 2, &v - B.data()) - 0.5);
          for (auto& v : C0) v = T(uniform01(seed, 3, &v - C0.data()) - 0.5);
          ++seed;
          std::vector<T> ref = C0;
          kernels::gemm_reference(ta, tb, M, N, K, T(0.75), A.data(), lda, B.data(), ldb, beta,
                                  ref.data(), ldc);
          kernels::PackedB<T> pb;
          o.pack_b(pb, tb, K, N, B.data(), ldb);
          std::vector<T> first;
          for (int threads : {1, 2, 3}) {
            std::vector<T> c = C0;
            o.gemm_packed(ta, M, A.data(), lda, T(0.75), pb, beta, nullptr, c.data(), ldc, threads);
            double err = 0;
            for (int i = 0; i < M; ++i)
              for (int j = 0; j < N; ++j) {
                const std::size_t k = static_cast<std::size_t>(i) * ldc + j;
                err = std::fmax(err, std::fabs(double(c[k]) - double(ref[k])));
              }
            CHECK(err <= tol * std::sqrt(double(K)));
            if (threads == 1) first = c;
            else CHECK(c == first);  // bitwise: the thread count never changes results
            // Padding columns of C (j == N) are never touched.
            for (int i = 0; i < M; ++i)
              CHECK(c[static_cast<std::size_t>(i) * ldc + N] == C0[static_cast<std::size_t>(i) * ldc + N]);
          }
        }
}

void math_family(CpuIsa isa) {
  const kernels::Ops<float>& o = kernels::ops_for<float>(isa);
  const int n = 200003;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = -40.0f + 80.0f * float(i) / float(n - 1);
  x[n / 2] = 0.0f;
  x[1] = 1e-6f;
  x[2] = -3e-8f;
  double e_exp = 0, e_tanh = 0, e_sig = 0;
  auto rel = [](double got, double want) {
    return want == 0 ? std::fabs(got) : std::fabs(got - want) / std::fabs(want);
  };
  o.exp(n, x.data(), y.data());
  for (int i = 0; i < n; ++i) e_exp = std::fmax(e_exp, rel(y[i], std::exp(double(x[i]))));
  o.tanh(n, x.data(), y.data());
  for (int i = 0; i < n; ++i) e_tanh = std::fmax(e_tanh, rel(y[i], std::tanh(double(x[i]))));
  o.sigmoid(n, x.data(), y.data());
  for (int i = 0; i < n; ++i)
    e_sig = std::fmax(e_sig, rel(y[i], 1.0 / (1.0 + std::exp(-double(x[i])))));
  std::printf("  %s: max relative error exp %.2e, tanh %.2e, sigmoid %.2e\n", isa_name(isa),
              e_exp, e_tanh, e_sig);
  // Documented bounds (README, kernels): a few float ulps (ulp = 1.19e-7).
  CHECK(e_exp < 4e-7);
  CHECK(e_tanh < 1.5e-7);  // 1.22 ulps at most over every float in [0, 10] (simd.h)
  CHECK(e_sig < 4e-7);
  // Near saturation y is within an ulp (5.96e-8 below 1) of the true tanh for every float in
  // [4, 10] (the rational form's few ulps were much of 1 - y: the backward's derivative
  // 1 - y^2 was up to 480% off), and non-decreasing there.
  std::vector<float> sx, sy;
  for (float v = 4.0f; v <= 10.0f; v = std::nextafter(v, 11.0f)) sx.push_back(v);
  sy.resize(sx.size());
  o.tanh(static_cast<int>(sx.size()), sx.data(), sy.data());
  double e_sat = 0;
  std::size_t falls = 0;
  for (std::size_t i = 0; i < sx.size(); ++i) {
    e_sat = std::fmax(e_sat, std::fabs(sy[i] - std::tanh(double(sx[i]))));
    if (i && sy[i] < sy[i - 1]) ++falls;
  }
  std::printf("  %s: tanh on [4, 10]: max abs error %.2e, %zu decreases\n", isa_name(isa), e_sat,
              falls);
  CHECK(e_sat <= 5.97e-8);
  CHECK(falls == 0);
  // Saturation: finite, exact limits.
  float big[4] = {-1e30f, 1e30f, -100.0f, 100.0f}, out[4];
  o.tanh(4, big, out);
  CHECK(out[0] == -1.0f && out[1] == 1.0f && out[2] == -1.0f && out[3] == 1.0f);
  o.sigmoid(4, big, out);
  CHECK(out[0] == 0.0f && out[1] == 1.0f && out[2] == 0.0f && out[3] == 1.0f);
  // Below ln(FLT_MIN) = -87.3365 the true sigmoid is subnormal: exactly 0 on every ISA, -inf
  // included (the clamped exp gave 6.05e-39 on scalar / AVX-512, AVX2's estimate 0); just above
  // it a normal value, within the bound.
  float low[6] = {-INFINITY, -1e30f, -100.0f, -88.0f, -87.34f, -87.3f}, low_out[6];
  o.sigmoid(6, low, low_out);
  for (int i = 0; i < 5; ++i) CHECK(low_out[i] == 0.0f);
  CHECK(low_out[5] > 0.0f && rel(low_out[5], 1.0 / (1.0 + std::exp(-double(low[5])))) < 4e-7);
  // NaN in, NaN out (in every lane position, full vectors and tails): never a plausible number.
  std::vector<float> nx(37, 0.5f), ny(37);
  for (int i : {0, 5, 16, 36}) nx[i] = std::nanf("");
  for (auto f : {o.exp, o.tanh, o.sigmoid}) {
    f(37, nx.data(), ny.data());
    for (int i = 0; i < 37; ++i) CHECK(std::isnan(ny[i]) == std::isnan(nx[i]));
  }
}

// Double math: AVX2 / AVX-512 compute exp, tanh and sigmoid in vectors (simd.h), the scalar ISA
// with libm. Errors in units in the last place of the true value (long double reference), over
// a dense sweep of [-40, 40], exp's whole range, tiny and subnormal inputs; exact special values;
// the same bits whatever the lane a value falls in (vector body, masked tail, offset).
// The ulp of double at the true value's binade (2^(e - 52), subnormals 2^-1074).
double ulps(double got, long double want) {
  if (std::isnan(got) || std::isinf(got)) return got == double(want) ? 0.0 : 1e300;
  if (want == 0.0L) return got == 0.0 ? 0.0 : 1e300;
  const long double ulp = std::ldexp(1.0L, std::max(std::ilogb(want) - 52, -1074));
  return double(std::fabs((long double)got - want) / ulp);
}

void double_math_family(CpuIsa isa) {
  const kernels::Ops<double>& o = kernels::ops_for<double>(isa);
  std::vector<double> x;
  for (int i = 0; i < 200003; ++i) x.push_back(-40.0 + 80.0 * double(i) / 200002.0);
  for (int i = 0; i <= 20000; ++i) x.push_back(-745.0 + 1454.7 * double(i) / 20000.0);  // exp's
  for (double e = -320; e <= 0; e += 0.25) {
    x.push_back(std::pow(10.0, e));
    x.push_back(-std::pow(10.0, e));
  }
  for (double v : {0.0, -0.0, 5e-324, -5e-324, 1e-310, 0.5493, 0.55, 19.0, 19.06, 19.07, 20.0,
                   25.0})
    x.push_back(v);
  // The worst of random searches: vector tanh 1.40 ulps at 0.52 (q / (q + 2)), 1.34 just past
  // the polynomial's 0.4, 1.21 just past 0.7, 0.61 below 0.4 (the quotient alone gave 2.55 at
  // 0.21); sigmoid 2.49 (libm's form alike).
  for (double v : {0.52070485391552002, 0.40210912027815698, 0.70153674770870222,
                   0.3986776382247631, 0.39999999999999997, 0.4, 0.6999999999999998, 0.7,
                   0.21212126358617708, 0.21668816866215007, -0.2086987519626354,
                   0.21666806186256421, -36.737427889889581})
    x.push_back(v);
  const int n = static_cast<int>(x.size());
  std::vector<double> y(x.size());
  auto worst = [&](auto want, double from = -INFINITY) {
    double e = 0;
    for (int i = 0; i < n; ++i)
      if (x[i] >= from) e = std::fmax(e, ulps(y[i], want(static_cast<long double>(x[i]))));
    return e;
  };
  o.exp(n, x.data(), y.data());
  const double e_exp = worst([](long double v) { return std::exp(v); });
  o.tanh(n, x.data(), y.data());
  const double e_tanh = worst([](long double v) { return std::tanh(v); });
  o.sigmoid(n, x.data(), y.data());
  // Below -709.78 exp(-x) overflows and 1 / (1 + exp(-x)) is 0 (true value under 1.7e-308),
  // libm's form and the vector one alike.
  const double e_sig = worst([](long double v) { return 1.0L / (1.0L + std::exp(-v)); }, -709.0);
  std::printf("  %s double: max error in ulps exp %.2f, tanh %.2f, sigmoid %.2f\n", isa_name(isa),
              e_exp, e_tanh, e_sig);
  // Documented bounds (README): libm's and the vector forms' alike. They need a reference finer
  // than double: valgrind runs x87 long double at double's precision (its errors then come out
  // as whole ulps, sigmoid 4), so there only the exact checks below run.
  volatile long double tiny = 0x1p-60L;
  if (1.0L + tiny != 1.0L) {
    CHECK(e_exp <= 1.0);
    CHECK(e_tanh <= (isa == CpuIsa::Scalar ? 3.0 : 1.5));  // libm's measured 1.88 here
    CHECK(e_sig <= 3.0);
  } else {
    std::printf("  (long double is no finer than double here: error bounds not checked)\n");
  }
  // Special values, exactly: overflow to inf, underflow through the subnormals to 0, the
  // saturated limits, signed zeros, NaN in every lane position (body and tail).
  const double in[] = {INFINITY, -INFINITY, 709.78, 709.79, -745.2,
                       -740.0,   0.0,       -0.0,   20.0,   -1e300};
  double out[10];
  o.exp(10, in, out);
  CHECK(out[0] == INFINITY && out[1] == 0.0 && std::isfinite(out[2]) && out[3] == INFINITY);
  CHECK(out[4] == 0.0 && out[5] == std::exp(-740.0) && out[6] == 1.0 && out[7] == 1.0);
  o.tanh(10, in, out);
  CHECK(out[0] == 1.0 && out[1] == -1.0 && out[8] == 1.0 && out[9] == -1.0);
  CHECK(out[6] == 0.0 && !std::signbit(out[6]) && out[7] == 0.0 && std::signbit(out[7]));
  o.sigmoid(10, in, out);
  CHECK(out[0] == 1.0 && out[1] == 0.0 && out[6] == 0.5 && out[9] == 0.0);
  std::vector<double> nx(37, 0.5), ny(37);
  for (int i : {0, 5, 8, 16, 36}) nx[i] = std::nan("");
  for (auto f : {o.exp, o.tanh, o.sigmoid}) {
    f(37, nx.data(), ny.data());
    for (int i = 0; i < 37; ++i) CHECK(std::isnan(ny[i]) == std::isnan(nx[i]));
  }
  // Each value's bits depend on it alone: computed one at a time, and from offsets 1-3.
  for (auto f : {o.exp, o.tanh, o.sigmoid}) {
    const int m = 4001;  // a slice of the sweep around 0
    const double* xs = x.data() + 100001 - m / 2;
    std::vector<double> all(m), one(m);
    f(m, xs, all.data());
    for (int i = 0; i < m; ++i) f(1, xs + i, &one[i]);
    CHECK(std::memcmp(all.data(), one.data(), m * sizeof(double)) == 0);
    for (int off = 1; off <= 3; ++off) {
      std::vector<double> part(m - off);
      f(m - off, xs + off, part.data());
      CHECK(std::memcmp(part.data(), all.data() + off, part.size() * sizeof(double)) == 0);
    }
  }
}

// Rows computed alone (the skinny path: 1 to MR - 1 rows) equal the same rows computed inside a
// taller product, for every row count up to past MR, K past a k block, alpha != 1 and A^T.
template <typename T>
void skinny_matches_tiled(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int M = 19, N = 75;
  for (int K : {300, 2100})
    for (Trans ta : {Trans::N, Trans::T}) {
      std::vector<T> A(static_cast<std::size_t>(M) * K), B(static_cast<std::size_t>(N) * K), bias(N);
      for (auto& v : A) v = T(uniform01(5, 1, &v - A.data()) - 0.5);
      for (auto& v : B) v = T(uniform01(5, 2, &v - B.data()) - 0.5);
      for (auto& v : bias) v = T(uniform01(5, 3, &v - bias.data()) - 0.5);
      // op(A) [M x K]: A itself, or At [K x M] holding the same values.
      std::vector<T> At(static_cast<std::size_t>(K) * M);
      for (int i = 0; i < M; ++i)
        for (int k = 0; k < K; ++k)
          At[static_cast<std::size_t>(k) * M + i] = A[static_cast<std::size_t>(i) * K + k];
      const T alpha = T(0.75);
      kernels::PackedB<T> pb;
      o.pack_b(pb, Trans::T, K, N, B.data(), K);
      auto run = [&](int i0, int rows, T* c) {
        const T* a = ta == Trans::N ? A.data() + static_cast<std::size_t>(i0) * K : At.data() + i0;
        o.gemm_packed(ta, rows, a, ta == Trans::N ? K : M, alpha, pb, T(0), bias.data(), c, N, 1);
      };
      std::vector<T> tall(static_cast<std::size_t>(M) * N), part(static_cast<std::size_t>(M) * N);
      run(0, M, tall.data());
      for (int rows = 1; rows <= 9; ++rows)
        for (int i0 = 0; i0 + rows <= M; i0 += 5) {
          run(i0, rows, part.data());
          for (int r = 0; r < rows; ++r)
            for (int j = 0; j < N; ++j)
              CHECK(part[static_cast<std::size_t>(r) * N + j] ==
                    tall[static_cast<std::size_t>(i0 + r) * N + j]);
        }
    }
}

// Few rows times op(B) read in place (gemm_b_in_place) give the bits of pack_b + gemm_packed (the
// skinny and the tiled micro-kernel), for every row count it takes, both op(B), edge groups and
// panels, k tails, K beyond one k-block, padded leading dimensions, alpha != 1, beta 0 and 1 and
// 1-3 threads; it declines what it does not take.
template <typename T>
void in_place_b_matches_packed(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int sizes[][2] = {{1, 1}, {5, 3}, {75, 300}, {100, 17}, {33, 2100}, {64, 2048}};
  int done[2] = {0, 0};
  for (Trans tb : {Trans::T, Trans::N})
    for (const auto& s : sizes)
      for (int M = 1; M <= 9; ++M)
        for (T beta : {T(0), T(1)})
          for (T alpha : {T(1), T(0.75)}) {
            const int N = s[0], K = s[1], lda = K + 3, ldc = N + 1;
            const int ldb = (tb == Trans::T ? K : N) + ((tb == Trans::T ? K : N) % 2 ? 0 : 5);
            std::vector<T> A(static_cast<std::size_t>(M) * lda);
            std::vector<T> B(static_cast<std::size_t>(tb == Trans::T ? N : K) * ldb);
            std::vector<T> C0(static_cast<std::size_t>(M) * ldc);
            for (auto& v : A) v = T(uniform01(11, 1, &v - A.data()) - 0.5);
            for (auto& v : B) v = T(uniform01(11, 2, &v - B.data()) - 0.5);
            for (auto& v : C0) v = T(uniform01(11, 3, &v - C0.data()) - 0.5);
            kernels::PackedB<T> pb;
            o.pack_b(pb, tb, K, N, B.data(), ldb);
            std::vector<T> want = C0;
            o.gemm_packed(Trans::N, M, A.data(), lda, alpha, pb, beta, nullptr, want.data(), ldc, 1);
            for (int threads : {1, 2, 3}) {
              std::vector<T> got = C0;
              if (!o.gemm_b_in_place(tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                                     got.data(), ldc, threads))
                continue;
              ++done[tb == Trans::N];
              CHECK(got == want);  // padding columns (j == N) included: never touched
            }
          }
  CHECK(done[0] == 6 * 8 * 2 * 2 * 3);  // B^T: every size with 1-8 rows, none with 9
  CHECK(done[1] >= 6 * 3 * 2 * 2 * 3);  // B: 1 to MR - 1 rows (3 on the scalar ISA)
  std::vector<T> A(9 * 4, T(1)), B(4 * 4, T(1)), C(9 * 4, T(0));
  for (Trans tb : {Trans::T, Trans::N}) {
    CHECK(!o.gemm_b_in_place(tb, 9, 4, 4, T(1), A.data(), 4, B.data(), 4, T(0), C.data(), 4, 1));
    CHECK(!o.gemm_b_in_place(tb, 1, 4, 4, T(1), A.data(), 4, B.data(), 4, T(0.5), C.data(), 4, 1));
    CHECK(!o.gemm_b_in_place(tb, 1, 4, 0, T(1), A.data(), 4, B.data(), 4, T(0), C.data(), 4, 1));
    CHECK(!o.gemm_b_in_place(tb, 1, 4, 4, T(0), A.data(), 4, B.data(), 4, T(0), C.data(), 4, 1));
  }
}

// gemm's blocked product (threads packing their own blocks of op(B), the k blocks after the
// first accumulating) gives the bits of one pack_b + gemm_packed whatever the block size: blocks
// of all of K and the thread's whole run of columns, of whole k blocks (K beyond two of them),
// and of one panel; every transpose, ragged sizes and padded leading dimensions, alpha 0 / 0.75
// / 1, beta 0 / 1 / 0.5, K = 0, 1 and 3 threads; and gemm / gemm_b_once themselves (2 MiB blocks,
// which split the last, float, shape in columns and in k).
template <typename T>
void blocked_matches_one_pack(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int sizes[][3] = {{10, 40, 4133}, {40, 70, 300}, {9, 33, 0}};  // (small: valgrind runs it)
  for (const auto& s : sizes)
    for (Trans ta : {Trans::N, Trans::T})
      for (Trans tb : {Trans::N, Trans::T})
        for (T alpha : {T(1), T(0.75), T(0)})  // 1: A may be read in place (a block's K)
          for (T beta : {T(0), T(1), T(0.5)}) {
            if (alpha == T(0) && s[2] != 300) continue;
            if (s[2] > 2048 && beta != T(0.5)) continue;  // (the long K costs: one beta)
            const int M = s[0], N = s[1], K = s[2];
            const int lda = (ta == Trans::N ? K : M) + 3, ldb = (tb == Trans::N ? N : K) + 2;
            const int ldc = N + 1;
            std::vector<T> A(static_cast<std::size_t>(ta == Trans::N ? M : K) * lda + 1),
                B(static_cast<std::size_t>(tb == Trans::N ? K : N) * ldb + 1),
                C0(static_cast<std::size_t>(M) * ldc);
            for (auto& v : A) v = T(uniform01(5, 1, &v - A.data()) - 0.5);
            for (auto& v : B) v = T(uniform01(5, 2, &v - B.data()) - 0.5);
            for (auto& v : C0) v = T(uniform01(5, 3, &v - C0.data()) - 0.5);
            kernels::PackedB<T> pb;
            o.pack_b(pb, tb, K, N, B.data(), ldb);
            std::vector<T> want = C0;
            o.gemm_packed(ta, M, A.data(), lda, alpha, pb, beta, nullptr, want.data(), ldc, 1);
            // Bytes of a block: one panel of a k block; a few panels; a few k blocks of a panel;
            // everything.
            const std::size_t panel = sizeof(T) * o.nr;
            for (std::size_t bytes : {panel, panel * 3 * o.kc, panel * 2 * std::max(K, 1),
                                      std::size_t(64) << 20})
              for (int threads : {1, 3}) {
                pyrnn::set_num_threads(threads);
                std::vector<T> got = C0;
                kernels::detail::gemm_in_blocks(bytes, ta, tb, M, N, K, alpha, A.data(), lda,
                                                B.data(), ldb, beta, got.data(), ldc);
                CHECK(got == want);
              }
            for (bool once : {false, true}) {
              std::vector<T> got = C0;
              (once ? kernels::gemm_b_once<T> : kernels::gemm<T>)(
                  ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
              if (M > 9) CHECK(got == want);  // (few rows may read B in place: tested above)
            }
          }
  // Fewer column panels than threads: the members split the rows (runs of 24, every tile
  // height's multiple; the tail in the last run), with the bits of one thread.
  {
    const int rows_sizes[][3] = {{1001, 5, 211}, {700, 20, 120}};
    for (const auto& s : rows_sizes)
      for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T})
          for (T alpha : {T(1), T(0.75)})
            for (T beta : {T(0), T(1), T(0.5)}) {
              const int M = s[0], N = s[1], K = s[2];
              const int lda = ta == Trans::N ? K : M, ldb = tb == Trans::N ? N : K;
              std::vector<T> A(static_cast<std::size_t>(M) * K), B(static_cast<std::size_t>(K) * N),
                  C0(static_cast<std::size_t>(M) * N);
              for (auto& v : A) v = T(uniform01(7, 1, &v - A.data()) - 0.5);
              for (auto& v : B) v = T(uniform01(7, 2, &v - B.data()) - 0.5);
              for (auto& v : C0) v = T(uniform01(7, 3, &v - C0.data()) - 0.5);
              kernels::PackedB<T> pb;
              o.pack_b(pb, tb, K, N, B.data(), ldb);
              std::vector<T> want = C0;
              o.gemm_packed(ta, M, A.data(), lda, alpha, pb, beta, nullptr, want.data(), N, 1);
              for (int threads : {2, 3}) {
                pyrnn::set_num_threads(threads);
                for (bool once : {false, true}) {
                  std::vector<T> got = C0;
                  (once ? kernels::gemm_b_once<T> : kernels::gemm<T>)(
                      ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), N);
                  CHECK(got == want);
                }
              }
            }
    pyrnn::set_num_threads(1);
  }
  // K x N = 537k elements of op(B), past one 2 MiB float block: gemm and gemm_b_once split it
  // (on 1 thread: 2 threads would take half the columns each, under one block).
  if (!std::is_same<T, float>::value) return;
  const int M = 10, N = 130, K = 4133;
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T}) {
      const int lda = ta == Trans::N ? K : M, ldb = tb == Trans::N ? N : K;
      std::vector<T> A(static_cast<std::size_t>(M) * K), B(static_cast<std::size_t>(K) * N),
          C0(static_cast<std::size_t>(M) * N);
      for (auto& v : A) v = T(uniform01(6, 1, &v - A.data()) - 0.5);
      for (auto& v : B) v = T(uniform01(6, 2, &v - B.data()) - 0.5);
      for (auto& v : C0) v = T(uniform01(6, 3, &v - C0.data()) - 0.5);
      kernels::PackedB<T> pb;
      o.pack_b(pb, tb, K, N, B.data(), ldb);
      pyrnn::set_num_threads(1);
      for (T beta : {T(0), T(1)}) {
        std::vector<T> want = C0;
        o.gemm_packed(ta, M, A.data(), lda, T(1), pb, beta, nullptr, want.data(), N, 1);
        for (bool once : {false, true}) {
          std::vector<T> got = C0;
          (once ? kernels::gemm_b_once<T> : kernels::gemm<T>)(ta, tb, M, N, K, T(1), A.data(), lda,
                                                              B.data(), ldb, beta, got.data(), N);
          CHECK(got == want);
        }
      }
    }
}

// Every GEMM path sums each element in chains of 256 k from fresh accumulators, each chain's sum
// added to C in order, a bias after the first chain (micro_kernel): a transcription in scalar
// float arithmetic (fma on the FMA ISAs, a * b + c on the scalar one) gives the same bits. One
// chain over all of K had 1.5-3x PyTorch's float32 error at K in the thousands.
template <typename T>
void sums_in_chains(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const bool fused = isa != CpuIsa::Scalar;
  // N = 40: an edge panel (8 columns: AVX-512 float's narrow kernel); 1, 2, 3 and 6: one panel,
  // narrow where n <= NR / 4 (AVX2 double: 1 and 2).
  // M = 24 to 75: narrow panels in groups and one by one, and a skinny tail, with A in place
  // (up to 512 KB: 24 rows, and 40 in float) and packed.
  for (int M : {1, 2, 9, 24, 40, 75})
  for (int N : {40, 1, 2, 3, 6}) {
    const int K = 2100;  // chains crossing a k block (KC = 2048)
    std::vector<T> A(static_cast<std::size_t>(M) * K), B(static_cast<std::size_t>(N) * K), bias(N);
    for (auto& v : A) v = T(uniform01(13, 1, &v - A.data()));
    std::vector<T> At(A.size());  // A^T [K, M]: always packed (A itself is read in place)
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < K; ++k)
        At[static_cast<std::size_t>(k) * M + i] = A[static_cast<std::size_t>(i) * K + k];
    for (auto& v : B) v = T(uniform01(13, 2, &v - B.data()));
    for (auto& v : bias) v = T(uniform01(13, 3, &v - bias.data()) - 0.5);
    for (T beta : {T(0), T(1)}) {
      std::vector<T> want(static_cast<std::size_t>(M) * N, T(0.5)), c1(want), c2(want), c3(want);
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          T sum = want[static_cast<std::size_t>(i) * N + j];
          for (int k0 = 0; k0 < K; k0 += 256) {
            T acc = T(0);
            for (int k = k0; k < std::min(K, k0 + 256); ++k) {
              const T a = A[static_cast<std::size_t>(i) * K + k], b = B[static_cast<std::size_t>(j) * K + k];
              acc = fused ? std::fma(a, b, acc) : a * b + acc;
            }
            if (beta == T(0) && k0 == 0) sum = acc + bias[j];
            else sum = sum + acc;
          }
          want[static_cast<std::size_t>(i) * N + j] = sum;
        }
      kernels::PackedB<T> pb;
      o.pack_b(pb, Trans::T, K, N, B.data(), K);
      o.gemm_packed(Trans::N, M, A.data(), K, T(1), pb, beta, beta == T(0) ? bias.data() : nullptr,
                    c1.data(), N, 1);
      CHECK(c1 == want);
      o.gemm_packed(Trans::T, M, At.data(), M, T(1), pb, beta, beta == T(0) ? bias.data() : nullptr,
                    c3.data(), N, 1);
      CHECK(c3 == want);
      if (beta == T(0)) continue;  // no bias on the in-place path
      if (o.gemm_b_in_place(Trans::T, M, N, K, T(1), A.data(), K, B.data(), K, beta, c2.data(), N, 1)) {
        CHECK(c2 == want);
      }
    }
  }
}

// A read in place (row-major, alpha = 1, up to 512 KB) gives the bits of the packed path (the
// same product through A^T, always packed): sizes on both sides of the in-place limit, K beyond
// one k-block, several in-place row blocks (M > 128), padded leading dimensions, a fused bias,
// and few columns (the narrow kernel; the chains transcription above checks its sums).
template <typename T>
void in_place_matches_packed(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int sizes[][3] = {{64, 96, 2048 * 4 / int(sizeof(T))}, {65, 96, 2048 * 4 / int(sizeof(T))},
                          {8, 40, 2100}, {33, 70, 300}, {200, 70, 300},
                          // few columns: the narrow kernel (n <= NR / 4) in place and packed
                          // (200 x 3; 40 x 20's edge of 4 for AVX2 float and AVX-512 double), or
                          // packed on both sides (75 x 1, past 512 KB)
                          {200, 3, 300}, {75, 1, 2100}, {40, 20, 300}};
  for (const auto& s : sizes) {
    const int M = s[0], N = s[1], K = s[2], lda = K + 3, ldat = M + 2;
    std::vector<T> A(static_cast<std::size_t>(M) * lda), At(static_cast<std::size_t>(K) * ldat);
    std::vector<T> B(static_cast<std::size_t>(K) * N), bias(N);
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < K; ++k)
        At[static_cast<std::size_t>(k) * ldat + i] = A[static_cast<std::size_t>(i) * lda + k] =
            T(uniform01(9, 1, static_cast<std::uint64_t>(i) * K + k) - 0.5);
    for (auto& v : B) v = T(uniform01(9, 2, &v - B.data()) - 0.5);
    for (auto& v : bias) v = T(uniform01(9, 3, &v - bias.data()) - 0.5);
    kernels::PackedB<T> pb;
    o.pack_b(pb, Trans::N, K, N, B.data(), N);
    for (T beta : {T(0), T(1)})
      for (const T* b : std::initializer_list<const T*>{nullptr, bias.data()}) {
        if (b && beta != T(0)) continue;  // a bias goes with beta = 0
        std::vector<T> c1(static_cast<std::size_t>(M) * N, T(0.25)), c2(c1);
        o.gemm_packed(Trans::N, M, A.data(), lda, T(1), pb, beta, b, c1.data(), N, 1);
        o.gemm_packed(Trans::T, M, At.data(), ldat, T(1), pb, beta, b, c2.data(), N, 1);
        CHECK(c1 == c2);
      }
  }
}

// stream_copy: every byte of the block copied, nothing outside it touched, for destinations at
// every offset from a 64-byte line (heads, streamed middles, tails), widths around a vector,
// strided rows and contiguous ones (copied as one run).
template <typename T>
void stream_copy_family(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  for (int rows : {0, 1, 3})
    for (int cols : {0, 1, 7, 8, 15, 16, 17, 33, 64, 100})
      for (int off = 0; off < 16; ++off)
        for (bool contiguous : {false, true}) {
          const int lds = contiguous ? cols : cols + 5, ldd = contiguous ? cols : cols + 3 + off;
          AlignedBuffer<T> src(static_cast<std::size_t>(rows) * lds + 1);
          AlignedBuffer<T> dst(static_cast<std::size_t>(rows + 1) * ldd + 32);
          for (std::size_t i = 0; i < src.size(); ++i) src[i] = T(i + 1);
          for (std::size_t i = 0; i < dst.size(); ++i) dst[i] = T(-1);
          o.stream_copy(rows, cols, src.data(), lds, dst.data() + off, ldd);
          bool ok = true;
          for (std::size_t i = 0; i < dst.size(); ++i) {
            const long long e = static_cast<long long>(i) - off;
            const bool in_rows = e >= 0 && ldd > 0 && e / ldd < rows;
            const long long r = in_rows ? e / ldd : 0, c = in_rows ? e % ldd : 0;
            const bool inside = in_rows && c < cols;
            ok = ok && dst[i] == (inside ? src[static_cast<std::size_t>(r * lds + c)] : T(-1));
          }
          if (!ok)
            std::fprintf(stderr, "  stream_copy %s rows=%d cols=%d off=%d contiguous=%d\n",
                         isa_name(isa), rows, cols, off, int(contiguous));
          CHECK(ok);
        }
}

}  // namespace

// gemm_b_panels (op(B) from B where it lies, by the calling thread over column panels) gives
// the bits of gemm_panels on pack_b(tb, ...), for both op(B): rows read in registers (B^T, up to
// 8) and rows past them or of op(B) = B through pieces packed one at a time (skinny rows, tiled
// rows read in place or packed, a tiled part and a skinny tail); the bias epilogue, beta 0, 1
// and 0.5, alpha 1, 0.75 and 0, K = 0, k beyond one block and a chain, groups of panels, edge
// panels, padded leading dimensions and sets of panel ranges that leave other columns alone.
// After reserve_b_panels the product allocates nothing (its scratch keeps its buffer).
template <typename T>
void b_panels_match_packed(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int nr = o.nr;
  // Every row count on the small sizes; on the two large ones (K past a block and a chain; 9
  // panels and an edge one: op(B) = B's groups of 8 panels and a shorter one) one of each path
  // (kept small: valgrind and the sanitizers run this).
  const int sizes[][2] = {{1, 1},      {5, 3},           {75, 300}, {100, 17},
                          {3 * nr + 5, 2100}, {9 * nr + 3, 600}, {2 * nr, 0}};
  const std::vector<int> all_rows = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 40}, few_rows = {2, 7, 9, 40};
  int done = 0;
  for (Trans tb : {Trans::T, Trans::N})
    for (const auto& s : sizes)
      for (int M : s[1] > 300 ? few_rows : all_rows)
        for (T beta : {T(0), T(1), T(0.5)})
          for (T alpha : {T(1), T(0.75), T(0)})
            for (bool bias : {false, true}) {
              const int N = s[0], K = s[1], lda = K + 3, ldc = N + 1;
              const int ldb = (tb == Trans::T ? K : N) + ((tb == Trans::T ? K : N) % 2 ? 0 : 5);
              const int panels = (N + nr - 1) / nr;
              std::vector<T> A(static_cast<std::size_t>(M) * lda);
              std::vector<T> B(static_cast<std::size_t>(tb == Trans::T ? N : K) * ldb + 1);
              std::vector<T> C0(static_cast<std::size_t>(M) * ldc), b(N);
              for (auto& v : A) v = T(uniform01(12, 1, &v - A.data()) - 0.5);
              for (auto& v : B) v = T(uniform01(12, 2, &v - B.data()) - 0.5);
              // beta 0: C is never read (NaN there would show)
              for (auto& v : C0)
                v = beta == T(0) ? std::numeric_limits<T>::quiet_NaN()
                                 : T(uniform01(12, 3, &v - C0.data()) - 0.5);
              for (auto& v : b) v = T(uniform01(12, 4, &v - b.data()) - 0.5);
              kernels::PackedB<T> pb;
              o.pack_b(pb, tb, K, N, B.data(), ldb);
              o.reserve_b_panels(tb, M, K, alpha);
              // All panels; then the first and the last panel alone (two ranges), leaving the rest.
              const int all[2] = {0, panels}, ends[4] = {0, 1, panels - 1, panels};
              for (int part = 0; part < 2; ++part) {
                const int* rg = part ? ends : all;
                const int nrg = part && panels > 1 ? 2 : 1;
                std::vector<T> want = C0, got = C0;
                o.gemm_panels(Trans::N, M, A.data(), lda, alpha, pb, beta,
                              bias ? b.data() : nullptr, want.data(), ldc, rg, nrg);
                pyrnn::detail::inject_allocation_failure(1);  // any allocation now throws
                bool allocated = false;
                try {
                  o.gemm_b_panels(tb, M, A.data(), lda, alpha, B.data(), ldb, N, K, beta,
                                  bias ? b.data() : nullptr, got.data(), ldc, rg, nrg);
                } catch (const pyrnn::OutOfMemory&) {
                  allocated = true;
                }
                pyrnn::detail::inject_allocation_failure(0);
                CHECK(!allocated);
                // the columns outside the ranges (and j == N) untouched: NaN there in both
                CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(T)) == 0);
                if (beta == T(0) && part == 0)  // every column written, none from C's NaN
                  for (int i = 0; i < M; ++i)
                    for (int j = 0; j < N; ++j)
                      CHECK(!std::isnan(got[static_cast<std::size_t>(i) * ldc + j]));
                ++done;
              }
            }
  CHECK(done == 2 * (5 * 11 + 2 * 4) * 3 * 3 * 2 * 2);
  // Outside a team reserving is optional (as reserve_a): on a new thread, whose scratch is
  // empty, and after a reservation for a smaller K, every path grows what it needs (an edge
  // panel: N not a multiple of nr).
  for (Trans tb : {Trans::T, Trans::N})
    for (int M : {2, 7, 12})
      for (int reserved_k : {-1, 10}) {
        const int N = 2 * nr + 3, K = 700, lda = K, ldc = N, ldb = tb == Trans::T ? K : N;
        std::vector<T> A(static_cast<std::size_t>(M) * lda), B(static_cast<std::size_t>(K) * N);
        for (auto& v : A) v = T(uniform01(13, 1, &v - A.data()) - 0.5);
        for (auto& v : B) v = T(uniform01(13, 2, &v - B.data()) - 0.5);
        kernels::PackedB<T> pb;
        o.pack_b(pb, tb, K, N, B.data(), ldb);
        const int all[2] = {0, (N + nr - 1) / nr};
        std::vector<T> want(static_cast<std::size_t>(M) * ldc), got = want;
        o.gemm_panels(Trans::N, M, A.data(), lda, T(1), pb, T(0), nullptr, want.data(), ldc, all,
                      1);
        std::thread([&] {
          if (reserved_k > 0) o.reserve_b_panels(tb, M, reserved_k, T(1));
          o.gemm_b_panels(tb, M, A.data(), lda, T(1), B.data(), ldb, N, K, T(0), nullptr,
                          got.data(), ldc, all, 1);
        }).join();
        CHECK(got == want);
      }
}

TEST(gemm_in_place_a_bitwise_equal_packed) {
  for (CpuIsa isa : available_isas()) {
    in_place_matches_packed<float>(isa);
    in_place_matches_packed<double>(isa);
  }
}

TEST(stream_copy_every_isa) {
  for (CpuIsa isa : available_isas()) {
    stream_copy_family<float>(isa);
    stream_copy_family<double>(isa);
  }
}

TEST(gemm_sums_in_chains_of_256) {
  for (CpuIsa isa : available_isas()) {
    sums_in_chains<float>(isa);
    sums_in_chains<double>(isa);
  }
}

TEST(gemm_b_in_place_bitwise_equal_packed) {
  for (CpuIsa isa : available_isas()) {
    in_place_b_matches_packed<float>(isa);
    in_place_b_matches_packed<double>(isa);
  }
}

TEST(gemm_b_panels_bitwise_equal_packed) {
  for (CpuIsa isa : available_isas()) {
    b_panels_match_packed<float>(isa);
    b_panels_match_packed<double>(isa);
  }
}

TEST(gemm_blocked_bitwise_equal_one_pack) {
  const CpuIsa saved_isa = pyrnn::get_cpu_isa();
  const int saved_threads = pyrnn::get_num_threads();
  for (CpuIsa isa : available_isas()) {
    pyrnn::set_cpu_isa(isa);  // gemm and its blocks dispatch on the selected ISA
    blocked_matches_one_pack<float>(isa);
    blocked_matches_one_pack<double>(isa);
  }
  pyrnn::set_cpu_isa(saved_isa);
  pyrnn::set_num_threads(saved_threads);
}

TEST(gemm_skinny_rows_bitwise_equal_tiled) {
  for (CpuIsa isa : available_isas()) {
    skinny_matches_tiled<float>(isa);
    skinny_matches_tiled<double>(isa);
  }
}

TEST(gemm_every_isa_matches_reference) {
  for (CpuIsa isa : available_isas()) {
    gemm_family<float>(isa, 2e-6);
    gemm_family<double>(isa, 1e-14);
  }
}

TEST(fast_math_every_isa) {
  for (CpuIsa isa : available_isas()) math_family(isa);
}

TEST(double_math_every_isa) {
  for (CpuIsa isa : available_isas()) double_math_family(isa);
  // AVX2 and AVX-512 run the same operations: the same bits.
  const auto isas = available_isas();
  if (std::find(isas.begin(), isas.end(), CpuIsa::AVX512) == isas.end()) return;
  std::vector<double> x;
  for (int i = 0; i < 30011; ++i) x.push_back(-760.0 + 1480.0 * double(i) / 30010.0);
  for (double e = -320; e <= 0; e += 0.5) {
    x.push_back(std::pow(10.0, e));
    x.push_back(-std::pow(10.0, e));
  }
  const int n = static_cast<int>(x.size());
  const kernels::Ops<double>& a = kernels::ops_for<double>(CpuIsa::AVX2);
  const kernels::Ops<double>& b = kernels::ops_for<double>(CpuIsa::AVX512);
  std::vector<double> ya(x.size()), yb(x.size());
  for (int f = 0; f < 3; ++f) {
    (f == 0 ? a.exp : f == 1 ? a.tanh : a.sigmoid)(n, x.data(), ya.data());
    (f == 0 ? b.exp : f == 1 ? b.tanh : b.sigmoid)(n, x.data(), yb.data());
    CHECK(std::memcmp(ya.data(), yb.data(), x.size() * sizeof(double)) == 0);
  }
}

// The peak loop does the multiply-adds it counts, at the ISA's full vector width: 12 chains of
// a = a b + c (b = 0.9999, c = 1e-5) from a_i = i / 1000: each lane of each ends at
// c / (1 - b) + (a_i - c / (1 - b)) b^R.
template <typename T>
void fma_loop_family(CpuIsa isa) {
  const kernels::Ops<T>& o = kernels::ops_for<T>(isa);
  const int bytes = isa == CpuIsa::AVX512 ? 64 : isa == CpuIsa::AVX2 ? 32 : int(sizeof(T));
  const int W = bytes / int(sizeof(T));  // lanes per vector
  for (long long R : {0LL, 1LL, 1000LL}) {
    T sink = -1;
    CHECK(o.fma_loop(R, &sink) == 2.0 * 12 * W * double(R));
    // The constants as T holds them; the fixed point is c / (1 - b).
    const double b = T(0.9999), c = T(1e-5), fixed = c / (1 - b);
    double want = 0;
    for (int i = 0; i < 12; ++i)
      want += W * (fixed + (double(T(i) * T(1e-3)) - fixed) * std::pow(b, double(R)));
    CHECK_NEAR(sink, want, 1e-4 * want);
  }
}

TEST(fma_loop_every_isa) {
  for (CpuIsa isa : available_isas()) {
    fma_loop_family<float>(isa);
    fma_loop_family<double>(isa);
  }
}

TEST(fma_peak_checks_its_arguments) {
  CHECK(kernels::fma_peak_gflops(1, 0.01) > 0);
  CHECK(kernels::fma_peak_gflops(2, 0.01) > 0);
  CHECK_THROWS(kernels::fma_peak_gflops(0, 0.01));
  CHECK_THROWS(kernels::fma_peak_gflops(4097, 0.01));
  CHECK_THROWS(kernels::fma_peak_gflops(1, 0.0));
  CHECK_THROWS(kernels::fma_peak_gflops(1, 61.0));
  CHECK_THROWS(kernels::fma_peak_gflops(1, std::nan("")));
}
