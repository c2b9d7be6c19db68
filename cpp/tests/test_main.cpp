#include <cstdio>
#include <exception>

#include "check.h"

int main() {
  int failed_cases = 0;
  for (const auto& c : check::registry()) {
    const int before = check::failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  %s: unexpected exception: %s\n", c.name, e.what());
      ++check::failures();
    }
    const bool ok = check::failures() == before;
    failed_cases += !ok;
    std::printf("[%s] %s\n", ok ? " OK " : "FAIL", c.name);
  }
  const int total = static_cast<int>(check::registry().size());
  std::printf("%d passed, %d failed\n", total - failed_cases, failed_cases);
  return failed_cases == 0 ? 0 : 1;
}
