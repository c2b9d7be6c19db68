// pyrnn::Error: the one exception type the C++ layer throws. Messages name shapes and values.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pyrnn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename A, typename... R>
void append(std::ostringstream& os, const A& a, const R&... r) {
  os << a;
  append(os, r...);
}
}  // namespace detail

// Build a message from pieces: throw_error("expected ", n, " rows, got ", m).
template <typename... A>
[[noreturn]] void throw_error(const A&... a) {
  std::ostringstream os;
  detail::append(os, a...);
  throw Error(os.str());
}

}  // namespace pyrnn

// Validation that stays on in release builds: user input reaches these checks.
#define PYRNN_CHECK(cond, ...)                      \
  do {                                              \
    if (!(cond)) ::pyrnn::throw_error(__VA_ARGS__); \
  } while (0)
