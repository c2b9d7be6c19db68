#include <cstdint>
#include <string>
#include <utility>

#include "check.h"
#include "pyrnn/matrix.h"
#include "pyrnn/runtime.h"
#include "pyrnn/version.h"

TEST(matrix_basics) {
  pyrnn::Matrix m(3, 5);
  CHECK(m.rows() == 3 && m.cols() == 5);
  CHECK(reinterpret_cast<std::uintptr_t>(m.data()) % 64 == 0);
  CHECK(m.get(2, 4) == 0.0f);
  m.set(1, 2, 7.5f);
  CHECK(m.get(1, 2) == 7.5f);
  CHECK(m.data()[1 * 5 + 2] == 7.5f);  // row-major
  pyrnn::MatrixD d(2, 2, {1, 2, 3, 4});
  CHECK(d.get(1, 0) == 3.0);
}

TEST(matrix_errors) {
  pyrnn::Matrix m(2, 2);
  CHECK_THROWS(m.get(2, 0));
  CHECK_THROWS(m.set(0, 2, 1.0f));
  CHECK_THROWS(pyrnn::Matrix(2, 2, {1.0f, 2.0f}));
  // A negative dimension (wrapped to size_t) beside a 0: an "empty" 2^64 - 1 row matrix before.
  for (const auto& dims : {std::pair<int, int>{-1, 0}, {0, -3}, {-1, 5}}) {
    bool named = false;
    try {
      pyrnn::Matrix bad(dims.first, dims.second);
    } catch (const pyrnn::Error& e) {
      named = std::string(e.what()).find("Matrix(" + std::to_string(dims.first) + ", " +
                                         std::to_string(dims.second) + "): dimensions must be") !=
              std::string::npos;
    }
    CHECK(named);
  }
}

TEST(matrix_copy_is_deep) {
  pyrnn::Matrix a(2, 3);
  a.set(0, 0, 1.0f);
  pyrnn::Matrix b = a;
  b.set(0, 0, 2.0f);
  CHECK(a.get(0, 0) == 1.0f);
}

TEST(matrix_moved_from_is_empty) {
  // A moved-from matrix is 0 x 0: it kept its shape with no storage, so get() read through null.
  pyrnn::Matrix a(2, 3);
  a.set(1, 2, 4.0f);
  pyrnn::Matrix b(std::move(a));
  CHECK(b.get(1, 2) == 4.0f && a.rows() == 0 && a.cols() == 0 && a.size() == 0);
  CHECK_THROWS(a.get(1, 2));
  pyrnn::Matrix c(1, 1);
  c = std::move(b);
  CHECK(c.rows() == 2 && c.get(1, 2) == 4.0f && b.rows() == 0 && b.cols() == 0);
  pyrnn::Matrix& alias = c;
  c = std::move(alias);  // self-move keeps the matrix
  CHECK(c.rows() == 2 && c.cols() == 3 && c.get(1, 2) == 4.0f);
  a = c;  // a moved-from matrix takes new values
  CHECK(a.rows() == 2 && a.get(1, 2) == 4.0f);
}

TEST(runtime_settings) {
  CHECK(std::string(pyrnn::version()) == PYRNN_VERSION_STRING);
  CHECK(pyrnn::available_isas().front() == pyrnn::CpuIsa::Scalar);
  CHECK(pyrnn::isa_supported(pyrnn::default_isa()));
  const auto saved = pyrnn::get_cpu_isa();
  pyrnn::set_cpu_isa(pyrnn::CpuIsa::Scalar);
  CHECK(pyrnn::get_cpu_isa() == pyrnn::CpuIsa::Scalar);
  pyrnn::set_cpu_isa(saved);
  CHECK_THROWS(pyrnn::parse_isa("sse9"));
  CHECK_THROWS(pyrnn::parse_isa("avx 2"));
  CHECK(pyrnn::parse_isa(" AVX512\n") == pyrnn::CpuIsa::AVX512);  // case and blanks forgiven
  CHECK(pyrnn::parse_isa("Scalar") == pyrnn::CpuIsa::Scalar);
  CHECK_THROWS(pyrnn::set_num_threads(0));
  pyrnn::set_num_threads(1);
  CHECK(pyrnn::get_num_threads() == 1);
}

TEST(runtime_default_num_threads_reads_omp_num_threads) {
  using pyrnn::default_num_threads;
  const int cpus = default_num_threads(nullptr);  // the affinity mask's CPUs
  CHECK(cpus >= 1 && cpus <= 4096);
  CHECK(default_num_threads("3") == 3);
  CHECK(default_num_threads(" 1 ") == 1);
  CHECK(default_num_threads("6,2") == 6);  // nested levels: the outer one is ours
  CHECK(default_num_threads("99999999999999999999") == 4096);
  for (const char* ignored : {"", "0", "-2", "abc", "4x", "2 3", ","})
    CHECK(default_num_threads(ignored) == cpus);
}
