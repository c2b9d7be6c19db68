#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "check.h"

// pyrnn_cpp_tests [SUBSTRING]: every case, or those whose name contains SUBSTRING.
int main(int argc, char** argv) {
  // An allocation during an OpenMP team's work aborts, naming itself (pyrnn/aligned.h).
  setenv("PYRNN_CHECK_TEAM_ALLOCATIONS", "1", /*overwrite=*/0);
  const char* only = argc > 1 ? argv[1] : nullptr;
  int failed_cases = 0, total = 0;
  for (const auto& c : check::registry()) {
    if (only && !std::strstr(c.name, only)) continue;
    ++total;
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
  std::printf("%d passed, %d failed\n", total - failed_cases, failed_cases);
  if (total == 0) std::fprintf(stderr, "no test case matches %s\n", only ? only : "(none)");
  return failed_cases == 0 && total > 0 ? 0 : 1;
}
