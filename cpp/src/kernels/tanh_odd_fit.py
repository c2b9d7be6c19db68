"""Prints kTanhOdd (simd.h): P of degree 9 with tanh(x) = x + x^3 P(x^2) on |x| < 0.4.

A Chebyshev fit (mpmath.chebyfit, 50 digits) to (tanh(x) - x) / x^3 over t = x^2 in [0, 0.16],
rounded to double; prints the fit's largest relative error with the rounded coefficients.
Run: python cpp/src/kernels/tanh_odd_fit.py (needs mpmath, which sympy / torch bring).
"""
import mpmath as mp

CUT = "0.4"  # simd.h's vtanh switches to the expm1 form at |x| = CUT
DEGREE = 9


def target(t):
    if t == 0:
        return mp.mpf(-1) / 3
    x = mp.sqrt(t)
    return (mp.tanh(x) - x) / (t * x)


def coefficients():
    """Highest degree first, as Horner's scheme in simd.h reads them, rounded to double."""
    with mp.workdps(50):
        return [float(c) for c in mp.chebyfit(target, [0, mp.mpf(CUT) ** 2], DEGREE + 1)]


def max_relative_error(coefs, points=2001):
    with mp.workdps(50):
        tmax = mp.mpf(CUT) ** 2
        worst = mp.mpf(0)
        for i in range(points):
            t = tmax * i / (points - 1)
            v = mp.mpf(0)
            for c in coefs:
                v = v * t + mp.mpf(c)
            worst = max(worst, abs(v / target(t) - 1))
        return float(worst)


if __name__ == "__main__":
    cs = coefficients()
    print("constexpr double kTanhOdd[%d] = {" % len(cs))
    print("    " + ", ".join(repr(c) for c in cs) + "};")
    print("// max relative error of P with these doubles: %.2e" % max_relative_error(cs))
