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


# Bad arguments: argparse's usage error (exit 2) naming the option, before any training; they
# were tracebacks from deep in numpy (or, for --temperatures -1, silently inverted sampling).
BAD_ARGS = [
    ("generate_text.py", ["--epochs", "0"], "--epochs must be >= 1"),
    ("generate_text.py", ["--temperatures", "0"], "--temperatures must be positive"),
    ("generate_text.py", ["--temperatures", "-1"], "--temperatures must be positive"),
    ("generate_text.py", ["--temperatures", "nan"], "--temperatures must be positive"),
    ("generate_text.py", ["--temperatures", "abc"], "--temperatures must be positive"),
    ("generate_text.py", ["--prime", "Zebra"], "'Z' are not among them"),
    ("generate_text.py", ["--prime", ""], "--prime must be non-empty"),
    ("forecast_sunspots.py", ["--window", "0"], r"--window must be in [1, 258]"),
    ("forecast_sunspots.py", ["--window", "259"], r"--window must be in [1, 258]"),
    ("forecast_sunspots.py", ["--epochs", "-1"], "--epochs must be >= 1"),
    ("classify_variable_length.py", ["--seed", "-1"], "--seed must be >= 0"),
    ("classify_variable_length.py", ["--epochs", "0"], "--epochs must be >= 1"),
]


@pytest.mark.parametrize("script,args,message", BAD_ARGS)
def test_example_refuses_bad_arguments(script, args, message, tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick"] + args,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr


def test_the_seed_ports_gru_is_torchs_form_and_matches_it(tmp_path):
    # The seeds' nn.GRU applies the reset gate after W_hn h; the ports used pyrnn's default
    # (the paper's form), which to_torch() cannot even convert (helper-183).
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(EXAMPLES / "seeds_lstm_vs_gru.py")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("GRU h_n vs torch.nn.GRU"))
    assert float(line.rsplit(" ", 1)[1]) < 1e-5, line
    assert "reset_after=True" in (EXAMPLES / "seeds_gru_training.py").read_text()


def test_generate_text_takes_a_tiny_temperature(tmp_path):
    # logits / 1e-320 overflowed to Inf and Inf - Inf gave NaN probabilities: a traceback.
    out = subprocess.run([sys.executable, str(EXAMPLES / "generate_text.py"), "--quick",
                          "--temperatures", "1e-320"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
