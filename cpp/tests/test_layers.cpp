// C++-level checks of the training-stack kernels: float64 central differences for Dense (every
// activation), LayerNorm and Embedding, hand-computed optimizer steps, and error paths.
// (The Python suite adds PyTorch parity for all of them.)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "check.h"
#include "row_sum_oracle.h"
#include "pyrnn/error.h"
#include "pyrnn/layers.h"
#include "pyrnn/optim.h"
#include "pyrnn/random.h"
#include "pyrnn/runtime.h"

namespace {

using pyrnn::Activation;

std::vector<double> random_vec(std::size_t n, std::uint64_t seed) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = 2.0 * pyrnn::uniform01(seed, 7, i) - 1.0;
  return v;
}

double numeric(double* v, const std::function<double()>& loss) {
  const double eps = 1e-6, old = *v;
  *v = old + eps;
  const double lp = loss();
  *v = old - eps;
  const double lm = loss();
  *v = old;
  return (lp - lm) / (2 * eps);
}

void dense_gradcheck(Activation act) {
  const int M = 5, in = 4, out = 3;
  std::vector<double> x = random_vec(M * in, 1), w = random_vec(out * in, 2), b = random_vec(out, 3);
  std::vector<double> wy = random_vec(M * out, 4), y(M * out);
  auto loss = [&]() {
    pyrnn::dense_forward(y.data(), x.data(), w.data(), b.data(), M, in, out, act);
    double s = 0;
    for (int i = 0; i < M * out; ++i) s += y[i] * wy[i];
    return s;
  };
  loss();
  std::vector<double> dx(M * in), dw(out * in, 0.5), db(out, 0.25);  // grads accumulate
  pyrnn::dense_backward(dx.data(), dw.data(), db.data(), wy.data(), y.data(), x.data(), w.data(),
                        M, in, out, act);
  for (int i = 0; i < M * in; ++i) CHECK_NEAR(dx[i], numeric(&x[i], loss), 1e-8);
  for (int i = 0; i < out * in; ++i) CHECK_NEAR(dw[i] - 0.5, numeric(&w[i], loss), 1e-8);
  for (int i = 0; i < out; ++i) CHECK_NEAR(db[i] - 0.25, numeric(&b[i], loss), 1e-8);
}

}  // namespace

TEST(dense_gradcheck_linear) { dense_gradcheck(Activation::None); }
TEST(dense_gradcheck_relu) { dense_gradcheck(Activation::ReLU); }
TEST(dense_gradcheck_tanh) { dense_gradcheck(Activation::Tanh); }
TEST(dense_gradcheck_sigmoid) { dense_gradcheck(Activation::Sigmoid); }

TEST(layernorm_gradcheck) {
  const int M = 3, D = 6;
  std::vector<double> x = random_vec(M * D, 5), w = random_vec(D, 6), b = random_vec(D, 7);
  std::vector<double> wy = random_vec(M * D, 8), y(M * D), mean(M), rstd(M);
  auto loss = [&]() {
    pyrnn::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), M,
                             D, 1e-5);
    double s = 0;
    for (int i = 0; i < M * D; ++i) s += y[i] * wy[i];
    return s;
  };
  loss();
  std::vector<double> dx(M * D), dw(D, 0.0), db(D, 0.0);
  pyrnn::layernorm_backward(dx.data(), dw.data(), db.data(), wy.data(), x.data(), mean.data(),
                            rstd.data(), w.data(), M, D);
  for (int i = 0; i < M * D; ++i) CHECK_NEAR(dx[i], numeric(&x[i], loss), 1e-7);
  for (int i = 0; i < D; ++i) CHECK_NEAR(dw[i], numeric(&w[i], loss), 1e-7);
  for (int i = 0; i < D; ++i) CHECK_NEAR(db[i], numeric(&b[i], loss), 1e-7);
}

namespace {

using pyrnn::CpuIsa;

// LayerNorm as one plain loop per row (the sums: row_sum_oracle.h; the parameter sums over rows
// in order). Every ISA's vectorised rows and every thread split must give exactly these bits.
template <typename T>
struct LayerNormCase {
  int M, D;
  std::vector<T> x, w, b, dy, y, dx, dw, db;
  std::vector<double> mean, rstd;
  LayerNormCase(int M_, int D_, std::uint64_t seed)
      : M(M_), D(D_), x(std::size_t(M_) * D_), w(D_), b(D_), dy(x.size()), y(x.size()),
        dx(x.size()), dw(D_, T(0.25)), db(D_, T(-0.5)), mean(M_), rstd(M_) {
    const auto r = random_vec(x.size() * 2 + 2 * D_, seed);
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = T(3 * r[i] + 2);  // an offset: the centred pass matters
      dy[i] = T(r[x.size() + i]);
    }
    for (int j = 0; j < D; ++j) {
      w[j] = T(r[2 * x.size() + j] + 1);
      b[j] = T(r[2 * x.size() + D + j]);
    }
    if (M > 1 && D > 2) {  // specials in row 1 stay in row 1
      x[D] = std::numeric_limits<T>::quiet_NaN();
      dy[D + 1] = std::numeric_limits<T>::infinity();
    }
  }
  void run() {
    pyrnn::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), M,
                             D, 1e-5);
    pyrnn::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                              rstd.data(), w.data(), M, D);
  }
  void reference() {
    std::vector<double> aw(D, 0.0), ab(D, 0.0);
    for (int m = 0; m < M; ++m) {
      const T* xr = &x[std::size_t(m) * D];
      const T* dyr = &dy[std::size_t(m) * D];
      const double mu = lanes8_sum(D, [&](int j) { return double(xr[j]); }) / D;
      const double rs = 1.0 / std::sqrt(lanes8_sum(D, [&](int j) {
                                          const double c = xr[j] - mu;
                                          return c * c;
                                        }) / D + 1e-5);
      mean[m] = mu;
      rstd[m] = rs;
      const double sg = lanes8_sum(D, [&](int j) { return double(dyr[j]) * w[j]; }) / D;
      const double sgx =
          lanes8_sum(D, [&](int j) { return double(dyr[j]) * w[j] * ((xr[j] - mu) * rs); }) / D;
      for (int j = 0; j < D; ++j) {
        const double xhat = (xr[j] - mu) * rs, g = double(dyr[j]) * w[j];
        y[std::size_t(m) * D + j] = static_cast<T>(xhat) * w[j] + b[j];
        dx[std::size_t(m) * D + j] = static_cast<T>(rs * (g - sg - xhat * sgx));
        aw[j] += double(dyr[j]) * xhat;
        ab[j] += dyr[j];
      }
    }
    for (int j = 0; j < D; ++j) {
      dw[j] += static_cast<T>(aw[j]);
      db[j] += static_cast<T>(ab[j]);
    }
  }
};

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
void layernorm_bits() {
  const CpuIsa saved_isa = pyrnn::get_cpu_isa();
  const int saved_threads = pyrnn::get_num_threads();
  // Row widths around the vector widths and the 8 lanes; the large ones pass the row-thread
  // threshold (32k elements for LayerNorm), so 2 and 3 threads split rows and parameter
  // columns; 40 x 1000 is between it and the other layers' 64k.
  const int shapes[][2] = {{3, 1},  {4, 5},   {2, 8},    {5, 9},   {3, 15},  {3, 17},
                           {2, 63}, {6, 130}, {40, 1000}, {300, 257}, {70, 1001}, {1, 70001}};
  for (const auto& s : shapes) {
    LayerNormCase<T> want(s[0], s[1], 40 + s[1]);
    want.reference();
    for (CpuIsa isa : pyrnn::available_isas())
      for (int threads : {1, 2, 3}) {
        pyrnn::set_cpu_isa(isa);
        pyrnn::set_num_threads(threads);
        LayerNormCase<T> got(s[0], s[1], 40 + s[1]);
        got.run();
        // y may alias x; x_keep gets x as it was, bit for bit (NaN included)
        std::vector<T> in_place = got.x, kept(got.x.size(), T(7));
        std::vector<double> mean2(s[0]), rstd2(s[0]);
        pyrnn::layernorm_forward(in_place.data(), mean2.data(), rstd2.data(), in_place.data(),
                                 got.w.data(), got.b.data(), s[0], s[1], 1e-5, kept.data());
        // dx may alias dy, or x
        std::vector<T> dx_dy = got.dy, dx_x = got.x, dw2(s[1], T(0.25)), db2(s[1], T(-0.5));
        std::vector<T> dw3 = dw2, db3 = db2;
        pyrnn::layernorm_backward(dx_dy.data(), dw2.data(), db2.data(), dx_dy.data(),
                                  got.x.data(), got.mean.data(), got.rstd.data(), got.w.data(),
                                  s[0], s[1]);
        pyrnn::layernorm_backward(dx_x.data(), dw3.data(), db3.data(), got.dy.data(),
                                  dx_x.data(), got.mean.data(), got.rstd.data(), got.w.data(),
                                  s[0], s[1]);
        const bool ok = same_bits(got.y, want.y) && same_bits(got.mean, want.mean) &&
                        same_bits(got.rstd, want.rstd) && same_bits(got.dx, want.dx) &&
                        same_bits(got.dw, want.dw) && same_bits(got.db, want.db) &&
                        same_bits(in_place, want.y) && same_bits(mean2, want.mean) &&
                        same_bits(rstd2, want.rstd) && same_bits(kept, want.x) &&
                        same_bits(dx_dy, want.dx) && same_bits(dw2, want.dw) &&
                        same_bits(db2, want.db) && same_bits(dx_x, want.dx) &&
                        same_bits(dw3, want.dw) && same_bits(db3, want.db);
        if (!ok)
          std::fprintf(stderr, "  layernorm %s threads=%d M=%d D=%d (%s)\n", pyrnn::isa_name(isa),
                       threads, s[0], s[1], sizeof(T) == 4 ? "float" : "double");
        CHECK(ok);
      }
  }
  pyrnn::set_cpu_isa(saved_isa);
  pyrnn::set_num_threads(saved_threads);
}

}  // namespace

TEST(layernorm_same_bits_on_every_isa_and_thread_count) {
  layernorm_bits<float>();
  layernorm_bits<double>();
}

TEST(embedding_forward_backward) {
  const int num = 4, dim = 2;
  std::vector<double> table = random_vec(num * dim, 9), y(5 * dim), dtable(num * dim, 0.0);
  const std::int64_t idx[5] = {3, 1, 3, 0, 2};
  pyrnn::embedding_forward(y.data(), idx, table.data(), 5, num, dim);
  for (int m = 0; m < 5; ++m)
    for (int j = 0; j < dim; ++j) CHECK(y[m * dim + j] == table[idx[m] * dim + j]);
  std::vector<double> dy(5 * dim, 1.0);
  pyrnn::embedding_backward(dtable.data(), dy.data(), idx, 5, num, dim, /*padding_idx=*/2);
  CHECK(dtable[3 * dim] == 2.0 && dtable[1 * dim] == 1.0 && dtable[0] == 1.0);
  CHECK(dtable[2 * dim] == 0.0);  // padding row gets nothing
  const std::int64_t bad[1] = {4};
  CHECK_THROWS(pyrnn::embedding_forward(y.data(), bad, table.data(), 1, num, dim));
  // A refused backward writes nothing (the bad index came after two good ones: they were
  // accumulated before), as the CUDA twin; a null index array is an error, not a crash.
  const std::vector<double> before = dtable;
  const std::int64_t late_bad[3] = {0, 1, 7};
  CHECK_THROWS(pyrnn::embedding_backward(dtable.data(), dy.data(), late_bad, 3, num, dim, -1));
  CHECK(dtable == before);
  CHECK_THROWS(pyrnn::embedding_backward(dtable.data(), dy.data(), nullptr, 3, num, dim, -1));
  CHECK_THROWS(pyrnn::embedding_forward(y.data(), nullptr, table.data(), 3, num, dim));
  CHECK_THROWS(pyrnn::dense_forward(y.data(), y.data(), y.data(), y.data(), 1, 0, 1,
                                    Activation::None));
}

#ifdef __linux__
#include <unistd.h>

// Resident memory in bytes (/proc/self/statm's second field, in pages).
long resident_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

// Resident memory tells only with the system allocator: valgrind's and ASan's keep what is
// freed (the reliability runs skip the check).
bool system_allocator() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#else
  bool valgrind = false;
  if (std::FILE* f = std::fopen("/proc/self/maps", "r")) {
    char line[512];
    while (!valgrind && std::fgets(line, sizeof line, f)) valgrind = std::strstr(line, "vgpreload");
    std::fclose(f);
  }
  return !valgrind;
#endif
}

TEST(dense_backward_keeps_no_copy_of_x) {
  // The weight-gradient GEMM packs x as its B operand into a thread_local buffer, which kept
  // a 64 MiB copy of x for the thread's lifetime.
  if (!system_allocator()) return;
  const std::int64_t M = std::int64_t(1) << 17;
  const int in = 128, out = 2;
  long grew = 0;
  {
    std::vector<float> x(static_cast<std::size_t>(M) * in, 0.5f), dy(static_cast<std::size_t>(M) * out, 1.0f);
    std::vector<float> w(static_cast<std::size_t>(out) * in, 0.1f), dw(w.size(), 0.0f), db(out, 0.0f);
    std::vector<float> y(dy.size());
    pyrnn::dense_forward(y.data(), x.data(), w.data(), db.data(), M, in, out, Activation::None);
    const long before = resident_bytes();
    pyrnn::dense_backward(static_cast<float*>(nullptr), dw.data(), db.data(), dy.data(), y.data(),
                          x.data(), w.data(), M, in, out, Activation::None);
    grew = resident_bytes() - before;
    CHECK_NEAR(dw[0], 0.5 * static_cast<double>(M), 1e-3 * static_cast<double>(M));
  }
  CHECK(grew < (32L << 20));  // x is 64 MiB
}
#endif

TEST(optimizer_steps_by_hand) {
  // SGD with momentum: first step buf = g, then buf = m * buf + g.
  double p = 1.0, g = 0.5, buf = 0.0;
  pyrnn::optim::sgd_step(&p, &g, &buf, 1, 0.1, 0.9, 0.0, 0.0, false, true);
  CHECK_NEAR(p, 1.0 - 0.1 * 0.5, 1e-15);
  pyrnn::optim::sgd_step(&p, &g, &buf, 1, 0.1, 0.9, 0.0, 0.0, false, false);
  CHECK_NEAR(buf, 0.9 * 0.5 + 0.5, 1e-15);
  // Adam's first step moves every coordinate by about lr (m_hat / sqrt(v_hat) = sign(g)).
  double q = 2.0, m = 0.0, v = 0.0, gq = -3.0;
  pyrnn::optim::adam_step(&q, &gq, &m, &v, static_cast<double*>(nullptr), 1, 0.01, 0.9, 0.999,
                          1e-8, 0.0, false, false, 1);
  CHECK_NEAR(q, 2.01, 1e-8);
  // RMSprop: s = (1 - alpha) g^2, p -= lr g / (sqrt(s) + eps).
  double r = 0.0, gr = 2.0, s = 0.0;
  pyrnn::optim::rmsprop_step(&r, &gr, &s, static_cast<double*>(nullptr),
                             static_cast<double*>(nullptr), 1, 0.01, 0.99, 0.0, 0.0, 0.0, false);
  CHECK_NEAR(r, -0.01 * 2.0 / std::sqrt(0.01 * 4.0), 1e-15);
  const double xs[3] = {3.0, -4.0, 0.0};
  CHECK_NEAR(pyrnn::optim::sum_squares(xs, 3), 25.0, 0.0);
  CHECK_NEAR(pyrnn::optim::max_abs(xs, 3), 4.0, 0.0);
}

TEST(all_finite_finds_one_nan_or_inf_anywhere) {
  const float big = std::numeric_limits<float>::max();
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (std::size_t n : {1, 7, 4096, 4097, 10000}) {
    std::vector<float> x(n, big);  // large finite values: x * 0 stays 0
    x[0] = -big;
    CHECK(pyrnn::optim::all_finite(x.data(), n));
    for (float b : bad)
      for (std::size_t at : {std::size_t(0), n / 2, n - 1}) {
        std::vector<float> y = x;
        y[at] = b;
        CHECK(!pyrnn::optim::all_finite(y.data(), n));
      }
  }
  const double d[] = {1.0, std::numeric_limits<double>::denorm_min(), -0.0};
  CHECK(pyrnn::optim::all_finite(d, 3));
  CHECK(pyrnn::optim::all_finite(static_cast<const double*>(nullptr), 0));
}

TEST(dropout_mask_is_the_counter_hash) {
  const std::size_t n = 4000;
  const double p = 0.3;
  std::vector<float> x(n), y(n), dx(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = 1.0f + float(i % 7);
  pyrnn::dropout_forward(y.data(), x.data(), n, 1234, p);
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool keep = pyrnn::uniform01(1234, 0, i) >= p;
    kept += keep;
    CHECK(y[i] == (keep ? x[i] * float(1.0 / 0.7) : 0.0f));
  }
  CHECK(kept > 2600 && kept < 3000);
  pyrnn::dropout_backward(dx.data(), x.data(), n, 1234, p);  // same mask
  CHECK(dx == y);
  pyrnn::dropout_forward(y.data(), x.data(), n, 1234, 1.0);  // p = 1 drops everything
  bool all0 = true;
  for (float v : y) all0 = all0 && v == 0.0f;
  CHECK(all0);
  CHECK_THROWS(pyrnn::dropout_forward(y.data(), x.data(), n, 1, 1.5));
}

// Above 64k elements the gather and the masks are split over threads: the same bits whatever
// the thread count (a row or an element is written by one formula, in any split).
TEST(embedding_and_dropout_threads_give_the_serial_bits) {
  const int saved_threads = pyrnn::get_num_threads();
  const int num = 500, dim = 40, M = 3001;  // 120k elements
  const std::size_t n = 100003;
  const std::vector<double> table = random_vec(num * dim, 21);
  std::vector<std::int64_t> idx(M);
  for (int m = 0; m < M; ++m) idx[m] = (m * 7919 + 13) % num;
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = 1.0f + float(i % 13);
  for (int threads : {1, 2, 3}) {
    pyrnn::set_num_threads(threads);
    std::vector<double> y(std::size_t(M) * dim, -1.0);
    pyrnn::embedding_forward(y.data(), idx.data(), table.data(), M, num, dim);
    bool rows_ok = true;
    for (int m = 0; m < M; ++m)
      rows_ok = rows_ok && std::memcmp(&y[std::size_t(m) * dim], &table[idx[m] * dim],
                                       dim * sizeof(double)) == 0;
    CHECK(rows_ok);
    std::vector<float> yd(n), dx(n);
    pyrnn::dropout_forward(yd.data(), x.data(), n, 99, 0.25);
    pyrnn::dropout_backward(dx.data(), x.data(), n, 99, 0.25);
    bool masks_ok = dx == yd;
    for (std::size_t i = 0; i < n; ++i)
      masks_ok = masks_ok && yd[i] == (pyrnn::uniform01(99, 0, i) >= 0.25 ? x[i] * float(1 / 0.75) : 0.0f);
    CHECK(masks_ok);
  }
  pyrnn::set_num_threads(saved_threads);
}

TEST(last_step_forward_backward) {
  const int N = 3, T = 4, H = 2, D = 2, W = D * H;
  std::vector<double> x = random_vec(N * T * W, 11), y(N * W), dx(N * T * W, 7.0);
  const std::int64_t lengths[N] = {4, 1, 2};
  pyrnn::last_step_forward(y.data(), x.data(), lengths, N, T, H, D);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < W; ++c) {
      const int t = c < H ? int(lengths[n]) - 1 : 0;
      CHECK(y[n * W + c] == x[(n * T + t) * W + c]);
    }
  std::vector<double> dy = random_vec(N * W, 12);
  pyrnn::last_step_backward(dx.data(), dy.data(), lengths, N, T, H, D);
  for (int n = 0; n < N; ++n)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < W; ++c) {
        const int want_t = c < H ? int(lengths[n]) - 1 : 0;
        CHECK(dx[(n * T + t) * W + c] == (t == want_t ? dy[n * W + c] : 0.0));
      }
  pyrnn::last_step_forward(y.data(), x.data(), nullptr, N, T, W, 1);  // all T, one direction
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < W; ++c) CHECK(y[n * W + c] == x[(n * T + T - 1) * W + c]);
  const std::int64_t bad[N] = {4, 0, 2};
  CHECK_THROWS(pyrnn::last_step_forward(y.data(), x.data(), bad, N, T, H, D));
}

TEST(layer_functions_refuse_null_buffers_and_unknown_activations) {
  using pyrnn::Activation;
  float y[4] = {}, x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 3, 4}, dw[4] = {}, b[2] = {}, db[2] = {};
  double mean[2] = {}, rstd[2] = {};
  const std::int64_t idx[2] = {0, 1};
  // Each refused before touching anything (UB before: a null load in the GEMM).
  CHECK(contains(error_of([&] { pyrnn::dense_forward<float>(y, nullptr, w, nullptr, 2, 2, 2, Activation::None); }),
                 "dense_forward: null x buffer"));
  CHECK(contains(error_of([&] { pyrnn::dense_forward<float>(y, x, nullptr, nullptr, 0, 2, 2, Activation::None); }),
                 "dense_forward: null w buffer"));
  CHECK(contains(error_of([&] { pyrnn::dense_forward<float>(y, x, w, nullptr, 2, 2, 2, static_cast<Activation>(9)); }),
                 "dense_forward: unknown activation 9"));
  CHECK(contains(error_of([&] { pyrnn::dense_backward<float>(nullptr, dw, nullptr, x, nullptr, x, w, 2, 2, 2, Activation::Tanh); }),
                 "dense_backward: null y buffer"));
  CHECK(contains(error_of([&] { pyrnn::dense_backward<float>(nullptr, nullptr, nullptr, x, y, x, w, 2, 2, 2, Activation::None); }),
                 "dense_backward: null dw buffer"));
  CHECK(contains(error_of([&] { pyrnn::dense_backward<float>(y, dw, nullptr, x, y, x, w, 2, 2, 2, static_cast<Activation>(-1)); }),
                 "unknown activation -1"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(y, mean, nullptr, x, w, b, 2, 2, 1e-5); }),
                 "layernorm_forward: null rstd buffer"));
  // x_keep laid over x or y (even one element) would be a corrupt cache: refused.
  float big[12] = {};
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, w, b, 2, 2, 1e-5, big + 3); }),
                 "layernorm_forward: x_keep overlaps x"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, w, b, 2, 2, 1e-5, big + 7); }),
                 "layernorm_forward: x_keep overlaps y"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big, mean, rstd, big, w, b, 2, 2, 1e-5, big); }),
                 "layernorm_forward: x_keep overlaps x"));
  pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, w, b, 2, 2, 1e-5, big + 8);  // adjacent
  pyrnn::layernorm_forward<float>(big, mean, rstd, big + 4, w, b, 2, 2, 1e-5, big + 8);
  pyrnn::layernorm_forward<float>(big, mean, rstd, big, w, b, 0, 2, 1e-5, big);  // no rows
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, big + 9, b, 2, 2, 1e-5, big + 8); }),
                 "layernorm_forward: x_keep overlaps w"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, w, big + 7, 2, 2, 1e-5, big + 8); }),
                 "layernorm_forward: x_keep overlaps b"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, reinterpret_cast<double*>(big + 8), big, w, b, 2, 2, 1e-5, big + 8); }),
                 "layernorm_forward: x_keep overlaps rstd"));
  // A size whose byte count wraps is refused, not taken for a small buffer.
  CHECK(contains(error_of([&] { pyrnn::layernorm_forward<float>(big + 4, mean, rstd, big, w, b, (std::int64_t(1) << 62) + 2, 1, 1e-5, big + 2); }),
                 "is beyond any buffer"));
  CHECK(contains(error_of([&] { pyrnn::layernorm_backward<float>(y, dw, nullptr, x, x, mean, rstd, w, 0, 2); }),
                 "layernorm_backward: null db buffer"));
  CHECK(contains(error_of([&] { pyrnn::embedding_forward<float>(y, idx, nullptr, 2, 2, 2); }),
                 "embedding_forward: null table buffer"));
  CHECK(contains(error_of([&] { pyrnn::embedding_backward<float>(nullptr, x, idx, 2, 2, 2, -1); }),
                 "embedding_backward: null dtable buffer"));
  CHECK(contains(error_of([&] { pyrnn::dropout_forward<float>(nullptr, x, 4, 1, 0.5); }),
                 "dropout_forward: null y buffer"));
  CHECK(contains(error_of([&] { pyrnn::dropout_backward<float>(y, nullptr, 4, 1, 0.5); }),
                 "dropout_backward: null dy buffer"));
  CHECK(contains(error_of([&] { pyrnn::last_step_forward<float>(y, nullptr, nullptr, 1, 2, 2, 1); }),
                 "last_step_forward: null x buffer"));
  CHECK(contains(error_of([&] { pyrnn::last_step_backward<float>(nullptr, x, nullptr, 1, 2, 2, 1); }),
                 "last_step_backward: null dx buffer"));
  for (float v : y) CHECK(v == 0.0f);
  // What may be null stays allowed: no bias, no dx, and no rows at all.
  pyrnn::dense_forward<float>(y, x, w, nullptr, 2, 2, 2, Activation::ReLU);
  pyrnn::dense_backward<float>(nullptr, dw, nullptr, x, y, x, nullptr, 2, 2, 2, Activation::ReLU);
  pyrnn::dense_forward<float>(nullptr, nullptr, w, nullptr, 0, 2, 2, Activation::None);
  pyrnn::dropout_forward<float>(nullptr, nullptr, 0, 1, 0.5);
}

TEST(optimizer_functions_refuse_null_buffers) {
  namespace optim = pyrnn::optim;
  float p[3] = {1, 2, 3}, g[3] = {1, 1, 1}, m[3] = {}, v[3] = {};
  // A null parameter or state was a null store (a crash); now refused, nothing written.
  CHECK(contains(error_of([&] { optim::sgd_step<float>(nullptr, g, nullptr, 3, 0.1, 0, 0, 0, false, true); }),
                 "sgd_step: null param buffer"));
  CHECK(contains(error_of([&] { optim::sgd_step<float>(p, g, nullptr, 3, 0.1, 0.9, 0, 0, false, true); }),
                 "sgd_step: momentum needs a buffer"));
  CHECK(contains(error_of([&] { optim::adam_step<float>(p, g, m, nullptr, nullptr, 3, 0.1, 0.9, 0.999, 1e-8, 0, false, false, 1); }),
                 "adam_step: null exp_avg_sq buffer"));
  CHECK(contains(error_of([&] { optim::adam_step<float>(p, g, m, v, nullptr, 3, 0.1, 0.9, 0.999, 1e-8, 0, false, false, 0); }),
                 "adam_step: step must be >= 1, got 0"));
  CHECK(contains(error_of([&] { optim::adam_step<float>(p, g, m, v, nullptr, 3, 0.1, 0.9, 0.999, 1e-8, 0, false, true, 1); }),
                 "amsgrad needs max_exp_avg_sq"));
  CHECK(contains(error_of([&] { optim::rmsprop_step<float>(p, nullptr, m, nullptr, nullptr, 3, 0.1, 0.99, 1e-8, 0, 0, false); }),
                 "rmsprop_step: null grad buffer"));
  CHECK(contains(error_of([&] { optim::rmsprop_step<float>(p, g, m, nullptr, nullptr, 3, 0.1, 0.99, 1e-8, 0, 0, true); }),
                 "centered needs grad_avg"));
  CHECK(contains(error_of([&] { optim::sum_squares<float>(nullptr, 3); }), "sum_squares: null x buffer"));
  CHECK(contains(error_of([&] { optim::max_abs<double>(nullptr, 1); }), "max_abs: null x buffer"));
  CHECK(contains(error_of([&] { optim::scale_inplace<float>(nullptr, 2, 0.5); }), "scale_inplace: null x buffer"));
  CHECK(p[0] == 1 && p[1] == 2 && p[2] == 3);
  // Empty tensors touch nothing: null is fine there.
  optim::sgd_step<float>(nullptr, nullptr, nullptr, 0, 0.1, 0.9, 0, 0, false, true);
  CHECK(optim::sum_squares<float>(nullptr, 0) == 0.0);
}
