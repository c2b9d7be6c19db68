"""Every Python example in examples/ runs with --quick (CI keeps them working)."""
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_the_examples_are_there():
    for name in ("forecast_sunspots.py", "classify_variable_length.py", "generate_text.py",
                 "seeds_rnn_model.py", "seeds_lstm_vs_gru.py", "seeds_gru_training.py"):
        assert name in SCRIPTS
    assert (EXAMPLES / "data" / "sunspots_yearly.csv").exists()
    assert "public domain" in (EXAMPLES / "data" / "README.md").read_text()


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_quick(script, tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.strip(), "an example should print what it did"
    assert "Traceback" not in out.stderr
