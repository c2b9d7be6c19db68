// Tolerance comparison for the CUDA tests: the GPU (or emulated) result against the CPU's.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

// max |got - want| <= tol * max(1, max |want|) over the whole tensor (NaN fails); says why not
// on stderr, labelled `what`.
template <typename T>
bool close_to(const std::vector<T>& got, const std::vector<T>& want, double tol,
              const std::string& what) {
  if (got.size() != want.size()) {
    std::fprintf(stderr, "  %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size());
    return false;
  }
  double scale = 1.0, worst = 0.0;
  for (T w : want) scale = std::max(scale, std::fabs(double(w)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(double(got[i]) - double(want[i]));
    worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(worst, e);
  }
  if (worst > tol * scale) {
    std::fprintf(stderr, "  %s: max error %.3g > %.3g\n", what.c_str(), worst, tol * scale);
    return false;
  }
  return true;
}
