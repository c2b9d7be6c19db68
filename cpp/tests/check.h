// A minimal test harness: TEST(name) { CHECK(...); }, run by test_main.cpp.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "pyrnn/error.h"

namespace check {
struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); }
};
}  // namespace check

// The message of the pyrnn::Error f throws, or "<no pyrnn::Error>".
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const pyrnn::Error& e) {
    return e.what();
  }
  return "<no pyrnn::Error>";
}

// Whether s contains part (printing both when not, to show the message).
inline bool contains(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos) return true;
  std::fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", s.c_str(), part.c_str());
  return false;
}

#define TEST(name)                                                \
  static void test_##name();                                      \
  static check::Register register_##name(#name, test_##name);     \
  static void test_##name()

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++check::failures();                                                     \
    }                                                                          \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
  do {                                                                                    \
    const double va_ = (a), vb_ = (b);                                                    \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                               \
      std::fprintf(stderr, "  %s:%d: %s = %.17g vs %s = %.17g (tol %g)\n", __FILE__, __LINE__, \
                   #a, va_, #b, vb_, static_cast<double>(tol));                           \
      ++check::failures();                                                                \
    }                                                                                     \
  } while (0)

#define CHECK_THROWS(expr)                                                               \
  do {                                                                                   \
    bool thrown_ = false;                                                                \
    try {                                                                                \
      expr;                                                                              \
    } catch (const pyrnn::Error&) {                                                      \
      thrown_ = true;                                                                    \
    }                                                                                    \
    if (!thrown_) {                                                                      \
      std::fprintf(stderr, "  %s:%d: %s did not throw pyrnn::Error\n", __FILE__, __LINE__, #expr); \
      ++check::failures();                                                               \
    }                                                                                    \
  } while (0)
