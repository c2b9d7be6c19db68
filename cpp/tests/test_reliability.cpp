// Reliability checks of the C++ core: NaN propagation through every ISA's float math and
// cells, the allocation guard (absurd sizes are refused before anything is allocated), the
// 32-bit GEMM size check, and error paths that must throw rather than touch memory. Also
// the driver of the sanitizer and valgrind runs (PYRNN_SANITIZE, .ci/run): forward/backward
// of every cell, lengths, bidirectional, multi-layer, dropout, both dtypes.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/resource.h>
#endif

#include "check.h"
#include "pyrnn/aligned.h"
#include "pyrnn/error.h"
#include "pyrnn/kernels/gemm.h"
#include "pyrnn/kernels/ops.h"
#include "pyrnn/layers.h"
#include "pyrnn/matrix.h"
#include "pyrnn/random.h"
#include "pyrnn/recurrent.h"
#include "pyrnn/runtime.h"

namespace {

using pyrnn::CellType;
using pyrnn::CpuIsa;
using pyrnn::Recurrent;
using pyrnn::RecurrentConfig;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

template <typename E, typename F>
bool throws(F&& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

struct IsaGuard {
  CpuIsa saved = pyrnn::get_cpu_isa();
  ~IsaGuard() { pyrnn::set_cpu_isa(saved); }
};

// A safety net while a test asks for absurd sizes: caps the address space at what the process
// maps now plus 4 GiB, so that if the guard regressed, the allocation fails here instead of the
// machine's OOM killer stepping in. Not under AddressSanitizer (terabytes of shadow mappings).
struct AddressSpaceCap {
#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
  rlimit saved{};
  bool set = false;
  AddressSpaceCap() {
    if (getrlimit(RLIMIT_AS, &saved) != 0) return;
    unsigned long long pages = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%llu", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    if (pages == 0) return;
    rlimit cap = saved;
    const rlim_t want = rlim_t(pages) * 4096 + (rlim_t(4) << 30);
    if (cap.rlim_cur == RLIM_INFINITY || cap.rlim_cur > want) cap.rlim_cur = want;
    set = setrlimit(RLIMIT_AS, &cap) == 0;
  }
  ~AddressSpaceCap() {
    if (set) setrlimit(RLIMIT_AS, &saved);
  }
#endif
};

}  // namespace

TEST(error_messages_are_utf8) {
  // Messages quote outside bytes (environment values); Python decodes what() as UTF-8, so a
  // Latin-1 value made the documented error a UnicodeDecodeError. Bytes outside well-formed
  // UTF-8 are written as \xNN; well-formed sequences (e, 2-, 3-, 4-byte) are kept.
  CHECK(std::string(pyrnn::Error("ISA='x\xe9'").what()) == "ISA='x\\xe9'");
  CHECK(std::string(pyrnn::Error("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").what()) ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  // Truncated, overlong, surrogate, past U+10FFFF, stray continuation.
  CHECK(std::string(pyrnn::Error("\xc3").what()) == "\\xc3");
  CHECK(std::string(pyrnn::Error("\xc0\xaf").what()) == "\\xc0\\xaf");
  CHECK(std::string(pyrnn::Error("\xed\xa0\x80").what()) == "\\xed\\xa0\\x80");
  CHECK(std::string(pyrnn::Error("\xf4\x90\x80\x80").what()) == "\\xf4\\x90\\x80\\x80");
  CHECK(std::string(pyrnn::Error("a\x80z").what()) == "a\\x80z");
  CHECK(std::string(pyrnn::OutOfMemory("LIMIT='\xff'").what()) == "LIMIT='\\xff'");
}

TEST(float_math_propagates_nan_every_isa) {
  for (CpuIsa isa : pyrnn::available_isas()) {
    const pyrnn::kernels::Ops<float>& o = pyrnn::kernels::ops_for<float>(isa);
    // NaN in every lane position (vector body and masked tail).
    std::vector<float> x(37, 0.5f), y(37);
    for (std::size_t i = 0; i < x.size(); i += 5) x[i] = kNaN;
    x[3] = kInf;
    x[4] = -kInf;
    o.exp(37, x.data(), y.data());
    for (std::size_t i = 0; i < x.size(); i += 5) CHECK(std::isnan(y[i]));
    CHECK(y[4] >= 0 && y[4] < 1e-30f);  // exp(-inf) ~ 0, finite
    o.tanh(37, x.data(), y.data());
    for (std::size_t i = 0; i < x.size(); i += 5) CHECK(std::isnan(y[i]));
    CHECK(y[3] == 1.0f && y[4] == -1.0f);
    o.sigmoid(37, x.data(), y.data());
    for (std::size_t i = 0; i < x.size(); i += 5) CHECK(std::isnan(y[i]));
    CHECK(y[3] == 1.0f && y[4] >= 0.0f && y[4] < 1e-30f);
    CHECK(y[1] > 0.62f && y[1] < 0.63f);  // sigmoid(0.5)
  }
}

namespace {
// A NaN in one sequence's input must reach that sequence's outputs (every ISA, every cell,
// both dtypes), and never the other sequences'.
template <typename T>
void nan_reaches_output(CellType cell) {
  RecurrentConfig cfg;
  cfg.cell = cell;
  cfg.input_size = 3;
  cfg.hidden_size = 21;  // not a multiple of any vector width: tails too
  Recurrent<T> net(cfg);
  net.reset_parameters(3);
  const int Tn = 4, N = 2, H = cfg.hidden_size;
  std::vector<T> x(static_cast<std::size_t>(Tn) * N * 3, T(0.25)), y(static_cast<std::size_t>(Tn) * N * H),
      hn(static_cast<std::size_t>(N) * H), cn(static_cast<std::size_t>(N) * H);
  x[0] = std::numeric_limits<T>::quiet_NaN();  // t = 0, sequence 0
  net.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, Tn, N, false, 0);
  for (int t = 0; t < Tn; ++t)
    for (int j = 0; j < H; ++j) {
      CHECK(std::isnan(y[(static_cast<std::size_t>(t) * N + 0) * H + j]));
      CHECK(std::isfinite(y[(static_cast<std::size_t>(t) * N + 1) * H + j]));
    }
}
}  // namespace

TEST(nan_input_propagates_every_isa_and_cell) {
  IsaGuard guard;
  for (CpuIsa isa : pyrnn::available_isas()) {
    pyrnn::set_cpu_isa(isa);
    for (CellType c : {CellType::RNN_TANH, CellType::RNN_RELU, CellType::LSTM, CellType::GRU}) {
      nan_reaches_output<float>(c);
      nan_reaches_output<double>(c);
    }
  }
}

TEST(dense_relu_propagates_nan) {
  const float x[2] = {kNaN, -1.0f}, w[1] = {1.0f};
  float y[2];
  pyrnn::dense_forward<float>(y, x, w, nullptr, 2, 1, 1, pyrnn::Activation::ReLU);
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.0f);
}

TEST(allocation_guard_refuses_absurd_sizes) {
  AddressSpaceCap cap;
  CHECK(pyrnn::memory_limit_bytes() > (std::uint64_t(1) << 20));
  CHECK(throws<std::bad_alloc>([] { pyrnn::AlignedBuffer<float> b(std::size_t(1) << 62); }));
  CHECK(throws<pyrnn::OutOfMemory>([] { pyrnn::AlignedBuffer<double> b(~std::size_t(0) / 4); }));
  CHECK(throws<std::bad_alloc>([] { pyrnn::Matrix m(std::size_t(1) << 31, std::size_t(1) << 31); }));
  // Parameters beyond memory: refused before the name table or any buffer is built.
  RecurrentConfig cfg;
  cfg.cell = CellType::LSTM;
  cfg.input_size = 512;
  cfg.hidden_size = 8192;
  cfg.num_layers = 100000;
  CHECK(throws<pyrnn::OutOfMemory>([&] { Recurrent<float> net(cfg); }));
  cfg.cell = CellType::RNN_TANH;
  cfg.input_size = cfg.hidden_size = 1;
  cfg.num_layers = 2147483647;
  CHECK(throws<pyrnn::OutOfMemory>([&] { Recurrent<double> net(cfg); }));
  // The message names the size.
  try {
    pyrnn::check_allocation(1e30, "a test buffer");
    CHECK(false);
  } catch (const pyrnn::OutOfMemory& e) {
    CHECK(std::string(e.what()).find("a test buffer needs") != std::string::npos);
    CHECK(std::string(e.what()).find("GiB") != std::string::npos);
  }
  // A size that went wrong in the caller's arithmetic is refused, not passed (NaN compares
  // false with every limit).
  for (double bad : {std::nan(""), -1.0}) {
    try {
      pyrnn::check_allocation(bad, "a test buffer");
      CHECK(false);
    } catch (const pyrnn::OutOfMemory&) {
      CHECK(false);
    } catch (const pyrnn::Error& e) {
      CHECK(std::string(e.what()).find("a test buffer: ") == 0);
      CHECK(std::string(e.what()).find("bytes is not a size") != std::string::npos);
    }
  }
}

// A buffer a thread team cannot allocate (a thread's A-block scratch, gemm_b_in_place's edge
// panel) is an OutOfMemory out of the product with C untouched: thrown inside the OpenMP region,
// it aborted the process. Run on a new thread, whose OpenMP team is new too, so that no
// member's scratch has grown yet; then the same products, allowed, give the one-thread bits.
template <typename T>
void team_allocation_failure(CpuIsa isa) {
  using pyrnn::kernels::Trans;
  const pyrnn::kernels::Ops<T>& o = pyrnn::kernels::ops_for<T>(isa);
  const int M = 40, N = 3 * o.nr + 5, K = 300, m_skinny = 2;  // N: an edge panel
  std::vector<T> A(static_cast<std::size_t>(K) * M), B(static_cast<std::size_t>(K) * N);
  std::vector<T> C0(static_cast<std::size_t>(M) * N);
  for (auto& v : A) v = T(pyrnn::uniform01(5, 1, &v - A.data()) - 0.5);
  for (auto& v : B) v = T(pyrnn::uniform01(5, 2, &v - B.data()) - 0.5);
  for (auto& v : C0) v = T(pyrnn::uniform01(5, 3, &v - C0.data()) - 0.5);
  pyrnn::kernels::PackedB<T> pb;
  o.pack_b(pb, Trans::N, K, N, B.data(), N);
  // C += A^T B (A stored [K, M]: packed per block), and C[:2] += A[:2] B (B read in place).
  auto packed = [&](std::vector<T>& c, int threads) {
    o.gemm_packed(Trans::T, M, A.data(), M, T(1), pb, T(1), nullptr, c.data(), N, threads);
  };
  auto in_place = [&](std::vector<T>& c, int threads) {
    CHECK(o.gemm_b_in_place(Trans::N, m_skinny, N, K, T(1), A.data(), K, B.data(), N, T(1),
                            c.data(), N, threads));
  };
  std::vector<T> want_packed = C0, want_in_place = C0;
  packed(want_packed, 1);
  in_place(want_in_place, 1);
  int refused[2] = {0, 0};  // 1: threw OutOfMemory with C untouched; -1: threw, C changed
  bool same_after = false;
  std::thread([&] {
    pyrnn::detail::inject_allocation_failure(1);
    std::vector<T> c = C0;
    try {
      packed(c, 2);
    } catch (const pyrnn::OutOfMemory&) {
      refused[0] = c == C0 ? 1 : -1;
    }
    c = C0;
    try {
      in_place(c, 2);
    } catch (const pyrnn::OutOfMemory&) {
      refused[1] = c == C0 ? 1 : -1;
    }
    pyrnn::detail::inject_allocation_failure(0);
    c = C0;
    packed(c, 2);
    same_after = c == want_packed;
    c = C0;
    in_place(c, 2);
    same_after = same_after && c == want_in_place;
  }).join();
  CHECK(refused[0] == 1);
  CHECK(refused[1] == 1);
  CHECK(same_after);
}

TEST(allocation_failure_inside_a_thread_team_is_an_exception) {
  for (CpuIsa isa : pyrnn::available_isas()) {
    team_allocation_failure<float>(isa);
    team_allocation_failure<double>(isa);
  }
}

TEST(memory_limit_environment_grammar) {
  using pyrnn::detail::parse_memory_limit;
  auto bytes = [](const char* v) { return parse_memory_limit(v).bytes; };
  auto ok = [](const char* v) { return parse_memory_limit(v).ok; };
  CHECK(ok(nullptr) && bytes(nullptr) == 0);  // unset
  CHECK(ok("  ") && bytes("  ") == 0);        // blank: unset
  CHECK(bytes("123") == 123);
  CHECK(bytes("4G") == (std::uint64_t(4) << 30));
  CHECK(bytes(" 4 GiB ") == (std::uint64_t(4) << 30));
  CHECK(bytes("512MB") == (std::uint64_t(512) << 20));
  CHECK(bytes("1.5k") == 1536);
  CHECK(bytes("2t") == (std::uint64_t(2) << 40));
  CHECK(bytes("64B") == 64);
  CHECK(bytes("2.") == 2 && bytes(".5k") == 512 && bytes("0.0625g") == (std::uint64_t(64) << 20));
  // Decimal only, whatever the C locale (strtod took these, and followed LC_NUMERIC).
  for (const char* bad : {"5x", "1 x", "G", "-1G", "0", "0.5", "nan", "1e400", "4GG", "4 G B x",
                          "0x10", "inf", "1e3", "+5", ".", "1,5G", "1 5"})
    CHECK(!ok(bad) && bytes(bad) == 0);
}

TEST(forward_activations_beyond_memory_refused_before_use) {
  // 64 layers x 2 directions of caches at T*N*G*H just under 2^31 elements each: far more
  // than any machine. The buffers passed are tiny: the guard must throw before touching them.
  AddressSpaceCap cap;
  RecurrentConfig cfg;
  cfg.cell = CellType::LSTM;
  cfg.input_size = 1;
  cfg.hidden_size = 64;
  cfg.num_layers = 64;
  cfg.bidirectional = true;
  Recurrent<float> net(cfg);
  std::vector<float> tiny(16);
  const int T = 1 << 12, N = (1 << 10) - 1;  // T*N*4H = 2^30 * 0.999 < 2^31
  CHECK(throws<pyrnn::OutOfMemory>([&] {
    net.forward(tiny.data(), tiny.data(), tiny.data(), tiny.data(), nullptr, nullptr, nullptr, T, N,
                true, 0);
  }));
  CHECK(!net.has_cache());
}

TEST(gemm_size_check_counts_rows) {
  // The input projection's GEMM takes its T*N rows as an int: T*N = 2^31 must be a
  // pyrnn::Error, thrown before any buffer is touched (the ones passed are tiny). The width
  // (G*H, D*H, C) does not enter: every buffer offset is a size_t.
  AddressSpaceCap cap;
  RecurrentConfig cfg;
  cfg.cell = CellType::RNN_TANH;
  cfg.input_size = 1;
  cfg.hidden_size = 64;
  cfg.num_layers = 2;
  cfg.bidirectional = true;
  Recurrent<float> net(cfg);
  std::vector<float> tiny(16);
  const int T = 1 << 16, N = 1 << 15;
  const std::string what = error_of([&] {
    net.forward(tiny.data(), tiny.data(), nullptr, tiny.data(), nullptr, nullptr, nullptr, T, N,
                false, 0);
  });
  CHECK(contains(what, "steps * batch = 65536 * 32768 rows overflow the 32-bit GEMM row count"));
  CHECK(contains(error_of([&] { net.check_forward(T, N, true); }), "rows overflow"));
}

TEST(gemm_size_check_does_not_wrap_around) {
  // T = N = 2^30 at width 16: T*N*16 = 2^64 wrapped to 0 in size_t and passed the check.
  RecurrentConfig cfg;
  cfg.cell = CellType::RNN_TANH;
  cfg.input_size = 16;
  cfg.hidden_size = 16;
  Recurrent<float> net(cfg);
  std::vector<float> tiny(16);
  CHECK(throws<pyrnn::Error>([&] {
    net.forward(tiny.data(), tiny.data(), nullptr, tiny.data(), nullptr, nullptr, nullptr, 1 << 30,
                1 << 30, true, 0);
  }));
  CHECK(!net.has_cache());
}

TEST(huge_hidden_size_is_an_error_not_an_overflow) {
  // 2 * hidden_size was computed in int: signed overflow (UB; UBSan aborts) for 2^30.
  RecurrentConfig cfg;
  cfg.cell = CellType::RNN_TANH;
  cfg.input_size = 1;
  cfg.hidden_size = 1 << 30;
  CHECK(throws<pyrnn::Error>([&] { cfg.validate(); }));
}

TEST(moved_from_recurrent_throws) {
  // A moved-from Recurrent kept its config and cache flag but lost its parameter table:
  // forward indexed an empty vector, backward an empty cache.
  RecurrentConfig cfg;
  cfg.input_size = 3;
  cfg.hidden_size = 4;  // LSTM
  std::vector<float> x(2 * 3), y(2 * 4), hn(4), cn(4), dx(2 * 3), dh(4), dc(4);
  Recurrent<float> a(cfg);
  a.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2, 1, true, 0);
  Recurrent<float> b(std::move(a));
  CHECK(a.moved_from() && !b.moved_from() && !a.has_cache() && b.has_cache());
  CHECK_THROWS(a.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2,
                         1, true, 0));
  CHECK_THROWS(a.backward(dx.data(), dh.data(), dc.data(), y.data(), nullptr, nullptr));
  b.backward(dx.data(), dh.data(), dc.data(), y.data(), nullptr, nullptr);  // b has it all
  Recurrent<float> c(cfg);
  c = std::move(b);
  CHECK(b.moved_from() && !c.moved_from());
  CHECK_THROWS(b.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2,
                         1, true, 0));
  Recurrent<float>& alias = c;
  c = std::move(alias);  // self-move: std::vector's emptied the parameter table
  CHECK_THROWS(c.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2,
                         1, true, 0));
  a = Recurrent<float>(cfg);  // assigned a new one: usable again
  a.forward(y.data(), hn.data(), cn.data(), x.data(), nullptr, nullptr, nullptr, 2, 1, true, 0);
  CHECK(!a.moved_from() && a.has_cache());
}

TEST(error_paths_throw_without_touching_memory) {
  RecurrentConfig cfg;
  cfg.cell = CellType::GRU;
  cfg.input_size = 2;
  cfg.hidden_size = 3;
  Recurrent<float> net(cfg);
  std::vector<float> buf(64);
  std::vector<std::int64_t> bad_len = {0, 3};
  CHECK(throws<pyrnn::Error>([&] {
    net.forward(buf.data(), buf.data(), nullptr, buf.data(), nullptr, nullptr, bad_len.data(), 3, 2,
                true, 0);
  }));
  CHECK(throws<pyrnn::Error>([&] {
    net.forward(buf.data(), buf.data(), nullptr, buf.data(), nullptr, nullptr, nullptr, 0, 2, true, 0);
  }));
  CHECK(throws<pyrnn::Error>([&] {
    net.backward(buf.data(), buf.data(), nullptr, buf.data(), nullptr, nullptr);
  }));
  cfg.hidden_size = 1 << 20;
  CHECK(throws<pyrnn::Error>([&] { Recurrent<float> big(cfg); }));
  pyrnn::Matrix m(2, 2);
  CHECK(throws<pyrnn::Error>([&] { m.get(2, 0); }));
}

namespace {
// Forward + backward of one configuration with random data: the sanitizer / valgrind driver.
template <typename T>
void exercise(CellType cell, int layers, bool bidir, bool reset_after, bool with_lengths,
              double dropout) {
  RecurrentConfig cfg;
  cfg.cell = cell;
  cfg.input_size = 5;
  cfg.hidden_size = 7;
  cfg.num_layers = layers;
  cfg.bidirectional = bidir;
  cfg.reset_after = reset_after;
  cfg.dropout = dropout;
  Recurrent<T> net(cfg);
  net.reset_parameters(11);
  const int Tn = 6, N = 3, D = cfg.directions(), H = cfg.hidden_size, L = layers;
  const std::size_t nx = std::size_t(Tn) * N * 5, ny = std::size_t(Tn) * N * D * H,
                    ns = std::size_t(L) * D * N * H;
  std::vector<T> x(nx), y(ny), hn(ns), cn(ns), h0(ns), c0(ns), dy(ny), dhn(ns), dcn(ns);
  for (std::size_t i = 0; i < nx; ++i) x[i] = T(pyrnn::uniform01(1, 0, i) - 0.5);
  for (std::size_t i = 0; i < ns; ++i) h0[i] = c0[i] = T(pyrnn::uniform01(2, 0, i) - 0.5);
  for (std::size_t i = 0; i < ny; ++i) dy[i] = T(pyrnn::uniform01(3, 0, i) - 0.5);
  for (std::size_t i = 0; i < ns; ++i) dhn[i] = dcn[i] = T(pyrnn::uniform01(4, 0, i) - 0.5);
  std::vector<std::int64_t> len = {6, 1, 4};
  const bool lstm = cell == CellType::LSTM;
  for (int rep = 0; rep < 2; ++rep) {  // reuse of the caches
    net.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x.data(), h0.data(),
                lstm ? c0.data() : nullptr, with_lengths ? len.data() : nullptr, Tn, N, true, 5);
    std::vector<T> dx(nx), dh0(ns), dc0(ns);
    net.backward(dx.data(), dh0.data(), lstm ? dc0.data() : nullptr, dy.data(), dhn.data(),
                 lstm ? dcn.data() : nullptr);
    for (T v : dx) CHECK(std::isfinite(v));
    for (T v : dh0) CHECK(std::isfinite(v));
  }
  // eval after training, and a different shape
  net.forward(y.data(), hn.data(), lstm ? cn.data() : nullptr, x.data(), nullptr, nullptr, nullptr,
              Tn - 2, N - 1, false, 0);
  for (std::size_t i = 0; i < std::size_t(Tn - 2) * (N - 1) * D * H; ++i) CHECK(std::isfinite(y[i]));
}
}  // namespace

TEST(exercise_every_configuration) {
  IsaGuard guard;
  for (CpuIsa isa : pyrnn::available_isas()) {
    pyrnn::set_cpu_isa(isa);
    for (CellType c : {CellType::RNN_TANH, CellType::RNN_RELU, CellType::LSTM, CellType::GRU})
      for (int layers : {1, 2})
        for (bool bidir : {false, true})
          for (bool lengths : {false, true}) {
            exercise<float>(c, layers, bidir, false, lengths, layers > 1 ? 0.3 : 0.0);
            exercise<double>(c, layers, bidir, false, lengths, 0.0);
            if (c == CellType::GRU) {
              exercise<float>(c, layers, bidir, true, lengths, 0.0);
              exercise<double>(c, layers, bidir, true, lengths, layers > 1 ? 0.3 : 0.0);
            }
          }
  }
}

TEST(an_isa_the_cpu_lacks_is_refused) {
  // On a CPU with AVX-512 nothing is missing; the test hook caps what counts as detected.
  IsaGuard guard;
  pyrnn::detail::cap_isa_for_tests(pyrnn::CpuIsa::Scalar);
  CHECK(pyrnn::available_isas() == std::vector<pyrnn::CpuIsa>{pyrnn::CpuIsa::Scalar});
  CHECK(!pyrnn::isa_supported(pyrnn::CpuIsa::AVX2) && !pyrnn::isa_supported(pyrnn::CpuIsa::AVX512));
  CHECK(contains(error_of([] { pyrnn::set_cpu_isa(pyrnn::CpuIsa::AVX2); }),
                 "CPU ISA 'avx2' is not supported by this CPU"));
  if (!std::getenv("PYRNN_CPU_ISA")) CHECK(pyrnn::get_cpu_isa() == pyrnn::CpuIsa::Scalar);
  pyrnn::detail::cap_isa_for_tests(pyrnn::CpuIsa::AVX512);
  CHECK(pyrnn::available_isas().size() >= 1);
}
