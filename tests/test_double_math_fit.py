"""The float64 tanh polynomial in cpp/src/kernels/simd.h is the one its fit script gives."""
import pathlib
import re
import runpy

import pytest

mp = pytest.importorskip("mpmath")

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNELS = ROOT / "cpp" / "src" / "kernels"


def test_tanh_odd_coefficients_are_the_fit_scripts():
    if not (KERNELS / "simd.h").exists():
        pytest.skip("run from a source tree")
    text = (KERNELS / "simd.h").read_text()
    body = re.search(r"constexpr double kTanhOdd\[(\d+)\] = \{([^}]*)\};", text)
    assert body, "kTanhOdd not found in simd.h"
    committed = [float(v) for v in body.group(2).replace("\n", " ").split(",") if v.strip()]
    assert len(committed) == int(body.group(1))
    fit = runpy.run_path(str(KERNELS / "tanh_odd_fit.py"))
    assert committed == fit["coefficients"]()  # bit for bit: the same doubles
    # The sum x + x t P rounds once; P's own error must stay far below double's 1.1e-16.
    assert fit["max_relative_error"](committed) < 1e-16
    # And it does fit tanh: P(0) = -1/3, P'(0) = 2/15 (the series).
    assert committed[-1] == -1 / 3 and abs(committed[-2] - 2 / 15) < 1e-14
