// pyrnn::Error: the one exception type the C++ layer throws. Messages name shapes and values.
#pragma once
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

namespace pyrnn {

namespace detail {
// s with every byte that is not part of a well-formed UTF-8 sequence written as \xNN: messages
// quote environment values and other outside bytes, and Python decodes what() as UTF-8 (a
// Latin-1 value made the documented error a UnicodeDecodeError).
inline std::string utf8_or_escaped(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned c = p[i];
    // The length of a well-formed sequence starting here (RFC 3629: no overlongs, no
    // surrogates, nothing past U+10FFFF), or 0.
    std::size_t len = 0;
    if (c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xF4) {
      const std::size_t want = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      const unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
      const unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
      bool ok = i + want <= n && p[i + 1] >= lo && p[i + 1] <= hi;
      for (std::size_t k = 2; ok && k < want; ++k) ok = p[i + k] >= 0x80 && p[i + k] <= 0xBF;
      len = ok ? want : 0;
    }
    if (len) {
      out.append(s, i, len);
      i += len;
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    }
  }
  return out;
}
}  // namespace detail

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(detail::utf8_or_escaped(what)) {}
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
