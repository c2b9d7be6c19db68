// Vector abstraction for the per-ISA kernel sources. Included only by kernels_isa.inc (after
// its `#pragma GCC target`), which is compiled once per ISA level: 0 scalar, 1 AVX2+FMA,
// 2 AVX-512. Everything here lives in that ISA's own namespace.
#pragma once

#include <cfloat>

// vtanh's float rounding trick (and the exact-bits promises of every kernel) need IEEE float
// arithmetic as written: no excess precision, no -ffast-math reassociation.
static_assert(FLT_EVAL_METHOD == 0, "pyrnn's kernels need FLT_EVAL_METHOD == 0 (SSE math)");
#ifdef __FAST_MATH__
#error "pyrnn's kernels must not be built with -ffast-math (their rounding is part of the results)"
#endif

namespace pyrnn {
namespace kernels {
namespace PYRNN_ISA_NS {

#if PYRNN_ISA_LEVEL == 2
struct VF {
  static constexpr int W = 16;
  __m512 v;
};
inline VF load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, VF a) { _mm512_storeu_ps(p, a.v); }
inline VF set1(float x) { return {_mm512_set1_ps(x)}; }
inline VF add(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VF sub(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VF mul(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VF div(VF a, VF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VF fmadd(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// 1/x: 14-bit estimate + one Newton step (~1 ulp), several times cheaper than a divide.
inline VF recip(VF x) {
  const __m512 r = _mm512_rcp14_ps(x.v);
  return {_mm512_fmadd_ps(r, _mm512_fnmadd_ps(x.v, r, _mm512_set1_ps(1.0f)), r)};
}
inline VF vmin(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VF vmax(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VF vabs(VF a) { return {_mm512_abs_ps(a.v)}; }
inline VF round_nearest(VF a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT)}; }
// p * 2^n for integral n: one instruction on AVX-512.
inline VF scale2(VF p, VF n) { return {_mm512_scalef_ps(p.v, n.v)}; }
inline VF select_lt(VF a, VF b, VF x, VF y) {  // a < b ? x : y
  return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), y.v, x.v)};
}
// 2^n from k = n + 127 + 2^23 (n integral in [-126, 127]; k's bits are 0x4B000000 + n + 127):
// the shift moves n + 127 into the exponent field and the 0x4B000000 out. Bits only: NaN in,
// garbage out, never undefined behaviour.
inline VF pow2_biased(VF k) {
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(k.v), 23))};
}
inline VF select_le(VF a, VF b, VF x, VF y) {  // a <= b ? x : y (NaN: y)
  return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ), y.v, x.v)};
}
inline bool any_lt(VF a, VF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ) != 0; }
inline VF nan_or(VF a, VF y) {  // isnan(a) ? a : y
  return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q), y.v, a.v)};
}
inline VF copysign(VF mag, VF sgn) {
  const __m512i m = _mm512_set1_epi32(0x80000000);
  return {_mm512_castsi512_ps(_mm512_or_si512(
      _mm512_andnot_si512(m, _mm512_castps_si512(mag.v)),
      _mm512_and_si512(m, _mm512_castps_si512(sgn.v))))};
}
inline VF load_partial(const float* p, int n) {
  return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p)};
}
inline void store_partial(float* p, VF a, int n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), a.v);
}
struct VD {
  static constexpr int W = 8;
  __m512d v;
};
inline VD load(const double* p) { return {_mm512_loadu_pd(p)}; }
inline void store(double* p, VD a) { _mm512_storeu_pd(p, a.v); }
inline VD set1(double x) { return {_mm512_set1_pd(x)}; }
inline VD add(VD a, VD b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VD sub(VD a, VD b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VD mul(VD a, VD b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VD div(VD a, VD b) { return {_mm512_div_pd(a.v, b.v)}; }
inline VD fmadd(VD a, VD b, VD c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline VD vmin(VD a, VD b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VD vmax(VD a, VD b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VD vabs(VD a) { return {_mm512_abs_pd(a.v)}; }
inline VD round_nearest(VD a) { return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEAREST_INT)}; }
inline VD round_down(VD a) { return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEG_INF)}; }
inline VD select_le(VD a, VD b, VD x, VD y) {  // a <= b ? x : y (NaN: y)
  return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ), y.v, x.v)};
}
inline VD nan_or(VD a, VD y) {  // isnan(a) ? a : y
  return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q), y.v, a.v)};
}
inline VD copysign(VD mag, VD sgn) {
  const __m512i m = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ull));
  return {_mm512_castsi512_pd(_mm512_or_si512(
      _mm512_andnot_si512(m, _mm512_castpd_si512(mag.v)),
      _mm512_and_si512(m, _mm512_castpd_si512(sgn.v))))};
}
// 2^k for integral k in [-1022, 1023], through the exponent bits: k + 1023 + 2^52 holds
// k + 1023 in its low bits, which the shift moves into the exponent field.
inline VD pow2i(VD k) {
  const __m512d biased = _mm512_add_pd(k.v, _mm512_set1_pd(1023.0 + 4503599627370496.0));
  return {_mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(biased), 52))};
}
#elif PYRNN_ISA_LEVEL == 1
struct VF {
  static constexpr int W = 8;
  __m256 v;
};
inline VF load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline VF set1(float x) { return {_mm256_set1_ps(x)}; }
inline VF add(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF sub(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF mul(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VF div(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VF fmadd(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
// 1/x: 12-bit estimate + two Newton steps (one leaves 1/1 at 1 - 1 ulp), cheaper than a divide.
inline VF recip(VF x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 r = _mm256_rcp_ps(x.v);
  r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x.v, r, one), r);
  return {_mm256_fmadd_ps(r, _mm256_fnmadd_ps(x.v, r, one), r)};
}
inline VF vmin(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VF vmax(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VF vabs(VF a) {
  return {_mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))};
}
inline VF round_nearest(VF a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// p * 2^n for integral n in [-126, 127], through the exponent bits.
inline VF scale2(VF p, VF n) {
  return {_mm256_mul_ps(p.v, _mm256_castsi256_ps(_mm256_slli_epi32(
                                 _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23)))};
}
inline VF pow2_biased(VF k) {  // 2^n from k = n + 127 + 2^23, as AVX-512's
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(k.v), 23))};
}
inline VF select_lt(VF a, VF b, VF x, VF y) {
  return {_mm256_blendv_ps(y.v, x.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))};
}
inline VF select_le(VF a, VF b, VF x, VF y) {
  return {_mm256_blendv_ps(y.v, x.v, _mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ))};
}
inline bool any_lt(VF a, VF b) {
  return _mm256_movemask_ps(_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)) != 0;
}
inline VF nan_or(VF a, VF y) {  // isnan(a) ? a : y
  return {_mm256_blendv_ps(y.v, a.v, _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q))};
}
inline VF copysign(VF mag, VF sgn) {
  const __m256 m = _mm256_castsi256_ps(_mm256_set1_epi32(0x80000000));
  return {_mm256_or_ps(_mm256_andnot_ps(m, mag.v), _mm256_and_ps(m, sgn.v))};
}
inline __m256i tail_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline VF load_partial(const float* p, int n) { return {_mm256_maskload_ps(p, tail_mask(n))}; }
inline void store_partial(float* p, VF a, int n) { _mm256_maskstore_ps(p, tail_mask(n), a.v); }
struct VD {
  static constexpr int W = 4;
  __m256d v;
};
inline VD load(const double* p) { return {_mm256_loadu_pd(p)}; }
inline void store(double* p, VD a) { _mm256_storeu_pd(p, a.v); }
inline VD set1(double x) { return {_mm256_set1_pd(x)}; }
inline VD add(VD a, VD b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VD sub(VD a, VD b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VD mul(VD a, VD b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VD div(VD a, VD b) { return {_mm256_div_pd(a.v, b.v)}; }
inline VD fmadd(VD a, VD b, VD c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline VD vmin(VD a, VD b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VD vmax(VD a, VD b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VD vabs(VD a) {
  return {_mm256_and_pd(a.v, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll)))};
}
inline VD round_nearest(VD a) {
  return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline VD round_down(VD a) {
  return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
}
inline VD select_le(VD a, VD b, VD x, VD y) {
  return {_mm256_blendv_pd(y.v, x.v, _mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ))};
}
inline VD nan_or(VD a, VD y) {  // isnan(a) ? a : y
  return {_mm256_blendv_pd(y.v, a.v, _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q))};
}
inline VD copysign(VD mag, VD sgn) {
  const __m256d m =
      _mm256_castsi256_pd(_mm256_set1_epi64x(static_cast<long long>(0x8000000000000000ull)));
  return {_mm256_or_pd(_mm256_andnot_pd(m, mag.v), _mm256_and_pd(m, sgn.v))};
}
// 2^k for integral k in [-1022, 1023], as AVX-512's pow2i.
inline VD pow2i(VD k) {
  const __m256d biased = _mm256_add_pd(k.v, _mm256_set1_pd(1023.0 + 4503599627370496.0));
  return {_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52))};
}
inline __m256i tail_mask_pd(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
#else
// Scalar: width 1, plain arithmetic (no FMA contraction in ISO C++ mode).
struct VF {
  static constexpr int W = 1;
  float v;
};
inline VF load(const float* p) { return {*p}; }
inline void store(float* p, VF a) { *p = a.v; }
inline VF set1(float x) { return {x}; }
inline VF add(VF a, VF b) { return {a.v + b.v}; }
inline VF sub(VF a, VF b) { return {a.v - b.v}; }
inline VF mul(VF a, VF b) { return {a.v * b.v}; }
inline VF div(VF a, VF b) { return {a.v / b.v}; }
inline VF fmadd(VF a, VF b, VF c) { return {a.v * b.v + c.v}; }
inline VF recip(VF x) { return {1.0f / x.v}; }
inline VF vmin(VF a, VF b) { return {a.v < b.v ? a.v : b.v}; }
inline VF vmax(VF a, VF b) { return {a.v > b.v ? a.v : b.v}; }
inline VF vabs(VF a) { return {std::fabs(a.v)}; }
inline VF round_nearest(VF a) { return {std::nearbyint(a.v)}; }
inline VF scale2(VF p, VF n) {
  const std::int32_t bits = (static_cast<std::int32_t>(n.v) + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return {p.v * f};
}
inline VF pow2_biased(VF k) {  // 2^n from k = n + 127 + 2^23, as AVX-512's
  std::uint32_t b;
  std::memcpy(&b, &k.v, sizeof b);
  b <<= 23;
  float f;
  std::memcpy(&f, &b, sizeof f);
  return {f};
}
inline VF select_lt(VF a, VF b, VF x, VF y) { return a.v < b.v ? x : y; }
inline VF select_le(VF a, VF b, VF x, VF y) { return a.v <= b.v ? x : y; }
inline bool any_lt(VF a, VF b) { return a.v < b.v; }  // some lane: a < b
inline VF nan_or(VF a, VF y) { return a.v != a.v ? a : y; }  // isnan(a) ? a : y
inline VF copysign(VF mag, VF sgn) { return {std::copysign(mag.v, sgn.v)}; }
inline VF load_partial(const float* p, int) { return {*p}; }
inline void store_partial(float* p, VF a, int) { *p = a.v; }
struct VD {
  static constexpr int W = 1;
  double v;
};
inline VD load(const double* p) { return {*p}; }
inline void store(double* p, VD a) { *p = a.v; }
inline VD set1(double x) { return {x}; }
inline VD add(VD a, VD b) { return {a.v + b.v}; }
inline VD fmadd(VD a, VD b, VD c) { return {a.v * b.v + c.v}; }
#endif

// The lanes [0, n) of a row chunk, decided once per chunk (no branch per load in the body).
// lanes<T>(n): the lanes of a float (T = float) or double vector (LanesD).
#if PYRNN_ISA_LEVEL == 2
struct Lanes {
  __mmask16 m;
};
struct LanesD {
  __mmask8 m;
};
template <typename T>
inline auto lanes(int n) {
  if constexpr (sizeof(T) == 4)
    return Lanes{static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1)};
  else
    return LanesD{static_cast<__mmask8>(n >= 8 ? 0xFF : (1u << n) - 1)};
}
inline VF ld(const float* p, Lanes l) { return {_mm512_maskz_loadu_ps(l.m, p)}; }
inline void st(float* p, VF a, Lanes l) { _mm512_mask_storeu_ps(p, l.m, a.v); }
inline VD ld(const double* p, LanesD l) { return {_mm512_maskz_loadu_pd(l.m, p)}; }
inline void st(double* p, VD a, LanesD l) { _mm512_mask_storeu_pd(p, l.m, a.v); }
#elif PYRNN_ISA_LEVEL == 1
struct Lanes {
  bool full;
  __m256i m;
};
struct LanesD {
  bool full;
  __m256i m;
};
template <typename T>
inline auto lanes(int n) {
  if constexpr (sizeof(T) == 4) return Lanes{n >= 8, tail_mask(n)};
  else return LanesD{n >= 4, tail_mask_pd(n)};
}
inline VF ld(const float* p, Lanes l) { return l.full ? load(p) : VF{_mm256_maskload_ps(p, l.m)}; }
inline void st(float* p, VF a, Lanes l) {
  if (l.full) store(p, a);
  else _mm256_maskstore_ps(p, l.m, a.v);
}
inline VD ld(const double* p, LanesD l) {
  return l.full ? load(p) : VD{_mm256_maskload_pd(p, l.m)};
}
inline void st(double* p, VD a, LanesD l) {
  if (l.full) store(p, a);
  else _mm256_maskstore_pd(p, l.m, a.v);
}
#else
struct Lanes {};
template <typename T>
inline Lanes lanes(int) { return {}; }
inline VF ld(const float* p, Lanes) { return {*p}; }
inline void st(float* p, VF a, Lanes) { *p = a.v; }
#endif

// ---- float math (Cephes-style polynomials; errors measured in cpp/tests/test_kernels.cpp) ---

// exp(x) for x in [-87.3, 88] (inputs are clamped there: results stay finite and normal; the
// cells only need exp where it has not yet saturated). Max rel error ~1.2e-7 (tests).
inline VF vexp(VF x_in) {
  // The clamp turns NaN finite (max/min return their second operand then); NaN is put back
  // at the end, so exp(NaN) = NaN (a NaN reaching scale2's float-to-int conversion would be
  // undefined behaviour, so it is not let through the polynomial).
  const VF x = vmin(vmax(x_in, set1(-87.3f)), set1(88.0f));
  const VF n = round_nearest(mul(x, set1(1.44269504088896341f)));
  VF r = fmadd(n, set1(-0.693359375f), x);  // x - n ln2, ln2 split in two for accuracy
  r = fmadd(n, set1(2.12194440e-4f), r);
  VF p = set1(1.9875691500e-4f);
  p = fmadd(p, r, set1(1.3981999507e-3f));
  p = fmadd(p, r, set1(8.3334519073e-3f));
  p = fmadd(p, r, set1(4.1665795894e-2f));
  p = fmadd(p, r, set1(1.6666665459e-1f));
  p = fmadd(p, r, set1(5.0000001201e-1f));
  p = fmadd(p, mul(r, r), add(r, set1(1.0f)));
  return nan_or(x_in, scale2(p, n));  // p * 2^n, n in [-126, 127]
}

// 1 / (1 + exp(-x)); 0 below ln(FLT_MIN) = -87.3365, where the true value is subnormal (it
// rounds to at most 1.2e-38): the clamped exp gave 6e-39 there, -inf included, and AVX2's
// reciprocal estimate 0, so the ISAs disagreed bitwise on a saturated gate.
inline VF vsigmoid(VF x) {
  const VF s = recip(add(set1(1.0f), vexp(sub(set1(0.0f), x))));
  return select_lt(x, set1(-87.33654f), set1(0.0f), s);  // NaN: not less, stays NaN
}

// tanh: below |x| = 0.625 the odd polynomial x + x^3 P(x^2) (P degree 4, a Chebyshev fit to
// (tanh(x) - x) / x^3 on x^2 <= 0.39, relative error 1.7e-8 with float coefficients), whose
// correction is under 12% of x, so the sum's one rounding dominates; from there
// 1 - 2 / (e^(2|x|) + 1), with e^(2|x|) + 1 = 2^n (1 + t G(t)) + 1 summed in one fused
// multiply-add (n = round(2|x| / ln2), t = |x| - n ln2 / 2 in two parts, |t| <= ln2 / 4, G of
// degree 5: relative error 1e-8), so the quotient and the last subtraction are the other two
// roundings. Every float in [0, 10]: at most 1.22 ulps (0.625), 1.21 on the scalar ISA (no
// FMA), where the quotient rational P/Q (4 + 4 FMAs and a reciprocal estimate) was 5.0 / 5.85
// ulps with 6M decreases; 1 - y within an ulp of the true value past 4, non-decreasing
// throughout; AVX2 and AVX-512 bitwise equal. Both forms run on every lane (no branch: each
// lane's result depends on that lane alone); |x| is capped at 9.5, where tanh already rounds to
// 1 (from 9.011), so 2^n stays normal. NaN stays NaN (min with the constant first, compares
// false, bit-only 2^n), +-inf give +-1, -0 and subnormal x give x (the polynomial's product
// underflows), the sign goes on last. About 1.3x the rational's time where no lane reached 4
// (its exp branch skipped), 0.85-0.9x with lanes past 4 in most vectors (a microbenchmark).
inline VF vtanh(VF x) {
  const VF ax = vabs(x);
  const VF z = mul(ax, ax);
  VF p = set1(-6.096714176e-03f);
  p = fmadd(p, z, set1(2.099717967e-02f));
  p = fmadd(p, z, set1(-5.385090783e-02f));
  p = fmadd(p, z, set1(1.333276927e-01f));
  p = fmadd(p, z, set1(-3.333332837e-01f));
  const VF small = fmadd(mul(ax, z), p, ax);  // |x| < 0.625
  const VF xc = vmin(set1(9.5f), ax);  // NaN stays NaN
  // n + 127 + 2^23: adding 2^23 rounds 2|x| / ln2 to an integer n, in float arithmetic
  // (round to nearest, no excess precision, no reassociation: checked at the top of the file)
  const VF k = fmadd(xc, set1(2.88539008177792681f), set1(8388735.0f));
  const VF n = sub(k, set1(8388735.0f));
  VF t = fmadd(n, set1(-0.3466796875f), xc);  // n ln2/2 in two parts, the first n * it exact
  t = fmadd(n, set1(1.06097220e-4f), t);
  VF g = set1(8.912752569e-02f);  // e^(2t) = 1 + t G(t)
  g = fmadd(g, t, set1(2.676215470e-01f));
  g = fmadd(g, t, set1(6.666648984e-01f));
  g = fmadd(g, t, set1(1.333326221e+00f));
  g = fmadd(g, t, set1(2.0f));
  g = fmadd(g, t, set1(2.0f));
  const VF s = pow2_biased(k);                                    // 2^n, n in [0, 27]
  // e^(2|x|) + 1 (2^n + 1 exact below n = 24; past it, the 1 is far below 2/den's last bit)
  const VF den = fmadd(s, mul(g, t), add(s, set1(1.0f)));
  const VF big = sub(set1(1.0f), div(set1(2.0f), den));
  return copysign(select_lt(ax, set1(0.625f), small, big), x);
}

#if PYRNN_ISA_LEVEL >= 1
// ---- double math (AVX2 / AVX-512; the scalar ISA keeps libm) ------------------------------
// The same operations on every lane and ISA (IEEE adds, multiplies, divides and fused
// multiply-adds), so a value's bits depend on neither the ISA nor where it falls in a vector.
// Errors against libm measured in cpp/tests/test_kernels.cpp.

// Taylor coefficients 1/k!, k = 13 down to 2: on |r| <= ln2 / 2 the next term is below 5e-18.
constexpr double kExpTaylor[12] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
    1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,      1.0 / 720.0,
    1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,         0.5};

// x = n ln2 + r, n integral, |r| <= ln2 / 2 (ln2 in two parts: n ln2_hi is exact);
// returns sum_{k>=2} r^(k-2) / k!, so that e^r - 1 = r + r^2 * that.
inline VD exp_reduce(VD x, VD* n, VD* r) {
  *n = round_nearest(mul(x, set1(1.4426950408889634)));
  *r = fmadd(*n, set1(-6.93147180369123816490e-01), x);
  *r = fmadd(*n, set1(-1.90821492927058770002e-10), *r);
  VD p = set1(kExpTaylor[0]);
  for (int k = 1; k < 12; ++k) p = fmadd(p, *r, set1(kExpTaylor[k]));
  return p;
}

// exp(x), within about an ulp of libm's, subnormal results and overflow to inf included.
inline VD vexp(VD x_in) {
  // Past the clamp the result is 0 or inf anyway (e^-746 < 2^-1075, e^710 > DBL_MAX); the clamp
  // also turns NaN finite (min/max return their second operand), and NaN is put back at the end.
  const VD x = vmin(vmax(x_in, set1(-746.0)), set1(710.0));
  VD n, r;
  const VD p = exp_reduce(x, &n, &r);
  const VD er = fmadd(fmadd(p, r, set1(1.0)), r, set1(1.0));  // e^r = 1 + r (1 + r p)
  // 2^n in two factors, each a normal number for n in [-1076, 1024]: the first product is
  // exact, the second rounds once (into the subnormals, or to inf, where the value lies).
  const VD n1 = round_down(mul(n, set1(0.5)));
  return nan_or(x_in, mul(mul(er, pow2i(n1)), pow2i(sub(n, n1))));
}

// 1 / (1 + exp(-x)), as cells.h's scalar form: 0 below -709.78 (exp(-x) overflows), 1 for
// large x.
inline VD vsigmoid(VD x) { return div(set1(1.0), add(set1(1.0), vexp(sub(set1(0.0), x)))); }

// tanh(x) on |x| < 0.4 as x + x t P(t), t = x^2: P a degree-9 fit to (tanh(x) - x) / x^3 on
// t <= 0.16 (tanh_odd_fit.py: Chebyshev, mpmath; relative error 6e-17 with the coefficients
// rounded to double; tests/test_double_math_fit.py checks these are its output),
// so the sum's one rounding dominates (|x t P| <= 0.054 |x|): about 0.6 ulp where the quotient
// below gave up to 2.55 (tanh low in its binade at |x| = 0.1-0.35).
constexpr double kTanhOdd[10] = {
    7.061356216868658e-05,  -0.0002307228307829282, 0.0005884926567947967,
    -0.0014556628733318807, 0.003592116096818484,   -0.008863235021978427,
    0.02186948852371375,    -0.05396825396809893,   0.13333333333333258,
    -0.3333333333333333};

// tanh(|x|) for |x| >= 0.4 from q = expm1(2|x|) = 2^n (1 + u) - 1, u = e^r - 1 = r + r^2 p,
// in one fused multiply-add: 2^n u + (2^n - 1). Below |x| = 0.7 as q / (q + 2) (up to 1.4 ulps
// in random searches), from there as 1 - 2 / (q + 2) (up to 1.21). |x| is capped at 20, where
// tanh already rounds to 1 (from 19.06). Both parts run on every lane: branching on the lanes'
// ranges mispredicted in the cell rows (one thread, seed LSTM float64 forward: 5-6% slower than
// the quotient alone with branches, 1-3.5% without; README). The sign of x goes on last
// (tanh(-0) = -0).
inline VD vtanh(VD x) {
  const VD ax = vabs(x);
  const VD t = mul(ax, ax);
  VD p = set1(kTanhOdd[0]);
  for (int k = 1; k < 10; ++k) p = fmadd(p, t, set1(kTanhOdd[k]));
  const VD small = fmadd(mul(ax, t), p, ax);  // |x| < 0.4

  const VD y = vmin(add(ax, ax), set1(40.0));
  VD n, r;
  const VD e = exp_reduce(y, &n, &r);
  const VD u = fmadd(e, mul(r, r), r);
  const VD s = pow2i(n);  // n in [0, 58] (1 on from |x| = 0.4, where the result is used)
  const VD q = fmadd(s, u, sub(s, set1(1.0)));
  // From |x| = 0.7 on, 1 - 2 / (q + 2): that quotient's error shrinks with it (0.66 ulp from
  // 1.5, 0.5 from 3) where q / (q + 2) stayed near 1.5 ulps up to saturation.
  const VD mid = set1(0.7);
  const VD w = div(select_le(mid, ax, set1(2.0), q), add(q, set1(2.0)));
  const VD big = select_le(mid, ax, sub(set1(1.0), w), w);
  return nan_or(x, copysign(select_le(set1(0.4), ax, big, small), x));
}
#endif

}  // namespace PYRNN_ISA_NS
}  // namespace kernels
}  // namespace pyrnn
