// The CPU's LayerNorm row sums, written plainly (the oracle of the C++ and CUDA element tests):
// 8 interleaved partial sums in double, lane k taking j = k mod 8 and the tail joining lanes
// 0, 1, ..., added ((0+1)+(2+3))+((4+5)+(6+7)). src/kernels/norm_rows_isa.inc must match it bit
// for bit on every ISA.
#pragma once

template <typename F>
double lanes8_sum(int n, F f) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) a[k] += f(j + k);
  for (int k = 0; j < n; ++j, ++k) a[k] += f(j);
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
