"""`pyrnn demo` and `pyrnn bench`: they run, print what they promise, and fail clearly.

The full demo takes seconds, but is not run here; --quick exercises every code path
(training, table, claims, sampling, the PNG) with tiny budgets. The claims themselves are
checked at full budget by tests/test_train_learning.py's adding-problem tests.
"""
import io
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyrnn
import pyrnn.cuda
from pyrnn import demo


def _pyrnn_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "pyrnn")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "pyrnn"]


def _run(args, cwd, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_demo_quick_prints_table_claims_and_sample(tmp_path):
    out = _run(_pyrnn_exe() + ["demo", "--quick", "--out", str(tmp_path / "plots")], tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "| Architecture" in text and "test MSE T=" in text and "s/epoch T=" in text
    for cell in ("RNN", "GRU", "LSTM"):
        assert f"| {cell} " in text
    assert "The seeds' claims, as observed in this run" in text
    assert "Sample (temperature" in text and "Shall I compare thee" in text
    assert "Demo finished in" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "install matplotlib" in text
    else:
        png = tmp_path / "plots" / "pyrnn_demo.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(png) in text


def test_python_m_pyrnn_demo_help(tmp_path):
    out = _run([sys.executable, "-m", "pyrnn", "demo", "--help"], tmp_path)
    assert out.returncode == 0 and "--quick" in out.stdout and "--device" in out.stdout


@pytest.mark.skipif(pyrnn.cuda.is_available(), reason="a CUDA device is available here")
def test_demo_device_cuda_without_gpu_exits_2(tmp_path):
    out = _run(_pyrnn_exe() + ["demo", "--device", "cuda"], tmp_path, timeout=60)
    assert out.returncode == 2
    assert "--device cuda" in out.stderr and "CUDA" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "pyrnn_demo.png").exists()  # nothing ran


def test_bench_quick_writes_valid_json(tmp_path):
    path = tmp_path / "out" / "bench.json"
    # One thread: on a busy shared machine a multi-thread fork/join can cost a scheduler slice.
    out = _run(_pyrnn_exe() + ["bench", "--quick", "--threads", "1", "--json", str(path)], tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result["config"] == {"T": 50, "N": 64, "C": 128, "H": 128}
    assert result["pyrnn"]["threads"] == 1
    cells = [r["cell"] for r in result["results"]]
    assert cells == ["RNN", "LSTM", "GRU"]
    for r in result["results"]:
        assert r["pyrnn_cpu_ms"] > 0
        assert (r["seeds_cpu_ms"], r["seeds_gpu_ms"]) == demo_seeds_ms()[r["cell"]]
        if not result["cuda"]["available"]:
            assert r["pyrnn_gpu_ms"] is None and r["gpu_note"]
    if not result["cuda"]["available"]:
        assert "n/a" in out.stdout
    assert "| RNN forward" in out.stdout


@pytest.mark.parametrize("args, option", [
    (["demo", "--threads", "0"], "--threads"), (["demo", "--threads", "5000"], "--threads"),
    (["demo", "--threads", "two"], "--threads"), (["demo", "--seed", "-1"], "--seed"),
    (["demo", "--lengths", "1"], "--lengths"), (["demo", "--lengths", "-3"], "--lengths"),
    (["demo", "--lengths", "20,,100"], "--lengths"), (["bench", "--repeats", "-2"], "--repeats"),
    # Repeats were trained twice and shown as one; one length is both "short" and "long"; a
    # huge one was a numpy allocation traceback.
    (["demo", "--lengths", "20,20"], "--lengths"), (["demo", "--lengths", "20"], "--lengths"),
    (["demo", "--lengths", "1000000000"], "--lengths"),
    (["demo", "--lengths", "99999999999999999999"], "--lengths"),
    (["bench", "--repeats", "0"], "--repeats"), (["bench", "--threads", "-1"], "--threads"),
])
def test_bad_arguments_are_usage_errors(tmp_path, args, option):
    # Refused by argparse before anything runs: exit status 2, the option named, no traceback.
    out = _run(_pyrnn_exe() + args, tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert option in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "pyrnn_demo.png").exists()


def test_bench_json_path_is_checked_before_the_run(tmp_path):
    (tmp_path / "adir").mkdir()
    for bad in (tmp_path / "adir", tmp_path / "afile" / "x.json"):
        (tmp_path / "afile").write_text("a file, not a folder")
        out = _run(_pyrnn_exe() + ["bench", "--quick", "--json", str(bad)], tmp_path, timeout=60)
        assert out.returncode == 2 and "--json" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and "| RNN forward" not in out.stdout  # no run


def test_demo_lengths_are_parsed():
    import argparse
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args(["--lengths", "20, 100"]).lengths == (20, 100)
    with pytest.raises(ValueError, match="two or more distinct"):
        demo.run(quick=True, plot_png=False, lengths=[20, 20])
    assert parser.parse_args(["--threads", "3", "--seed", "0"]).threads == 3


def demo_seeds_ms():
    from pyrnn import bench
    return bench.SEEDS_MS


# ---- in-process pieces -------------------------------------------------------------------
def test_adding_problem_is_what_it_claims():
    x, y = demo.adding_problem(4000, 30, np.random.default_rng(0))
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 1)
    assert (x[:, :, 1].sum(axis=1) == 2).all()
    assert (x[:, :15, 1].sum(axis=1) == 1).all()  # one marker in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=1), rtol=1e-6)
    assert abs(float(np.mean((y - 1.0) ** 2)) - demo.BASELINE) < 0.01


def _result(cell, T, mse, sec=0.1):
    return {"cell": cell, "T": T, "params": {"RNN": 1, "GRU": 3, "LSTM": 4}[cell],
            "test_mse": mse, "baseline_mse": 1 / 6, "solved": mse < demo.SOLVED,
            "sec_per_epoch": sec, "epochs": 5}


def test_table_and_claims_report_failures_honestly():
    results = [_result("RNN", 20, 0.01, 0.1), _result("GRU", 20, 0.01, 0.2),
               _result("LSTM", 20, 0.01, 0.3), _result("RNN", 100, 0.0049, 0.5),
               _result("GRU", 100, 0.16, 0.6), _result("LSTM", 100, 0.002, 0.4)]
    table = demo.format_table(results, (20, 100))
    assert "0.1600 FAIL" in table and "0.0049 ok" in table
    claims = {c: held for c, held, _ in demo.claims(results, (20, 100))}
    assert claims["A vanilla RNN has poor long-term memory (fails at T=100)"] is False
    assert claims["GRU and LSTM hold on long dependencies (learn T=100)"] is False
    assert claims["A vanilla RNN does well on short sequences (learns T=20; the seeds recommend "
                  "it below 10 steps)"] is True
    assert claims["Speed: RNN fastest, GRU in between, LSTM slowest"] is False


def test_sample_uses_the_model_and_temperature():
    model, chars, hist, _ = demo.train_char_gru(epochs=1, hidden=16, seed=0,
                                                stream=io.StringIO())
    a = demo.sample(model, chars, "Shall", 40, temperature=0.7, seed=1)
    b = demo.sample(model, chars, "Shall", 40, temperature=0.7, seed=1)
    assert a == b and a.startswith("Shall") and len(a) == 45
    assert set(a) <= set(chars)
    greedy = demo.sample(model, chars, "Shall", 10, temperature=0)
    assert greedy == demo.sample(model, chars, "Shall", 10, temperature=0, seed=5)
    # A tiny positive temperature is greedy too (logits / 1e-320 gave Inf - Inf = NaN
    # probabilities: "Probabilities contain NaN"; helper-183).
    assert demo.sample(model, chars, "Shall", 10, temperature=1e-320) == greedy


def test_the_plain_progress_prints_the_last_epoch():
    # It printed every 10th epoch only: a run stopping early at epoch 29 had no final line.
    stream = io.StringIO()
    cb = demo._progress_callback("rnn", 50, stream, "val_loss")
    cb.on_train_begin()
    for epoch in range(13):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
    cb.on_train_end()
    lines = stream.getvalue().splitlines()
    assert [s.split(",")[0] for s in lines] == ["  rnn: epoch 10/50", "  rnn: epoch 13/50"]


def test_check_device():
    assert demo.check_device("cpu") == "cpu"
    with pytest.raises(demo.DemoError):
        demo.check_device("tpu")
    if not pyrnn.cuda.is_available():
        with pytest.raises(demo.DemoError, match="no usable CUDA device"):
            demo.check_device("cuda")


def test_a_bad_cpu_isa_is_reported_not_raised(tmp_path):
    # PYRNN_CPU_ISA naming no ISA made pyrnn.info() (and `pyrnn info`, demo, bench) fail with a
    # traceback: the diagnostic could not say what was wrong.
    env = dict(os.environ, PYRNN_CPU_ISA="sse9")
    code = ("import pyrnn; i = pyrnn.info(); print(i['cpu_isa'], '|', i['cpu_isa_error'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("None | PYRNN_CPU_ISA='sse9' names no CPU ISA")
    for args in (["info"], ["info", "--json"]):
        out = subprocess.run(_pyrnn_exe() + args, capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=60)
        assert out.returncode == 0 and "sse9" in out.stdout, out.stderr
    for args in (["demo", "--quick"], ["bench", "--quick"]):
        for exe in (_pyrnn_exe(), [sys.executable, "-m", "pyrnn." + args[0]]):
            out = subprocess.run(exe + args[1:] if "-m" in exe else exe + args,
                                 capture_output=True, text=True, cwd=tmp_path, env=env,
                                 timeout=60)
            assert out.returncode == 2 and "PYRNN_CPU_ISA='sse9'" in out.stderr, out.stderr
            assert "Traceback" not in out.stderr
    # set_cpu_isa fixes every pass, the training stack's too (it reached only pyrnn._core).
    code = ("import numpy as np, pyrnn; pyrnn.set_cpu_isa('scalar'); "
            "pyrnn.LSTM(2, 3)(np.ones((2, 1, 2))); pyrnn.Dense(2, 3)(np.ones((4, 2))); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_output_paths_are_checked_before_the_run(tmp_path):
    # bench --json "dir/" (or a path the system refuses) and demo --out naming a file ran the
    # whole run, then failed with a traceback.
    import importlib.util
    (tmp_path / "afile").write_text("a file, not a folder")
    os.symlink(tmp_path / "run-42.json", tmp_path / "latest.json")  # dangling: kept as it is
    cases = [(["bench", "--quick", "--json", str(tmp_path / "new") + "/"], "--json"),
             (["bench", "--quick", "--json", "/proc/pyrnn.json"], "--json")]
    if importlib.util.find_spec("matplotlib") is not None:  # else no PNG, nothing to check
        cases.append((["demo", "--quick", "--out", str(tmp_path / "afile" / "x")], "--out"))
    for args, what in cases:
        out = _run(_pyrnn_exe() + args, tmp_path, timeout=60)
        assert out.returncode == 2 and what in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and "| RNN" not in out.stdout  # nothing ran
    assert sorted(os.listdir(tmp_path)) == ["afile", "latest.json"]  # nothing made or broken
    assert os.readlink(tmp_path / "latest.json") == str(tmp_path / "run-42.json")
    from pyrnn import bench
    import argparse
    args = argparse.Namespace(json=str(tmp_path / "latest.json"), quick=True, threads=1,
                              repeats=1, no_torch=True)
    bench.run, real = (lambda **kw: {"ok": 1}), bench.run
    try:
        assert bench.main_args(args) == 0  # written through the link, the link intact
    finally:
        bench.run = real
    assert json.loads((tmp_path / "run-42.json").read_text()) == {"ok": 1}
    assert os.path.islink(tmp_path / "latest.json")


def test_demo_run_puts_the_thread_count_back():
    saved = pyrnn.get_num_threads()
    pyrnn.set_num_threads(2)
    try:
        demo.run(quick=True, threads=1, plot_png=False, stream=io.StringIO(),
                 lengths=[5, 6])
        assert pyrnn.get_num_threads() == 2
    finally:
        pyrnn.set_num_threads(saved)


def test_memory_errors_name_the_limit_that_applies(tmp_path):
    # A PYRNN_MEMORY_LIMIT above the machine's memory was named as the limit (with the
    # machine's size), and small limits printed as "0.1 GiB".
    code = ("import pyrnn\ntry:\n    pyrnn.Dense(10**5, 10**5)\nexcept MemoryError as e:\n"
            "    print(e)")
    for limit, want in (("1000T", r"more than this machine's memory \([\d.]+ GiB\)"),
                        ("100M", r"more than PYRNN_MEMORY_LIMIT \(100.0 MiB\)"),
                        ("10K", r"more than PYRNN_MEMORY_LIMIT \(10.0 KiB\)"),
                        ("100", r"more than PYRNN_MEMORY_LIMIT \(100 bytes\)")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=tmp_path, env=dict(os.environ, PYRNN_MEMORY_LIMIT=limit),
                             timeout=60)
        import re
        assert re.search(want, out.stdout), (limit, out.stdout, out.stderr)


def test_bench_json_takes_a_pipe_and_a_refusal_leaves_no_folders(tmp_path):
    # realpath of /dev/stdout (a pipe here) named no file, so the check refused it; and folders
    # made for a refused path stayed.
    code = ("import argparse, sys; from pyrnn import bench; bench.run = lambda **kw: {'ok': 1}; "
            "sys.exit(bench.main_args(argparse.Namespace(json=sys.argv[1], quick=True, "
            "threads=1, repeats=1, no_torch=True)))")
    out = subprocess.run([sys.executable, "-c", code, "/dev/stdout"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and '"ok": 1' in out.stdout, out.stderr
    bad = tmp_path / "a" / "b" / ("x" * 300 + ".json")  # the name is too long
    out = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "--json" in out.stderr, out.stderr
    assert not (tmp_path / "a").exists()


def test_rnn_memory_claim_is_inconclusive_when_every_cell_fails():
    # All three failing at the long length says nothing about the RNN's memory in particular
    # (a tiny budget, a bad seed): it was reported as the claim holding.
    results = [_result(c, 20, 0.01) for c in ("RNN", "GRU", "LSTM")] + \
              [_result(c, 100, 0.16) for c in ("RNN", "GRU", "LSTM")]
    checked = {c: (held, ev) for c, held, ev in demo.claims(results, (20, 100))}
    held, evidence = checked["A vanilla RNN has poor long-term memory (fails at T=100)"]
    assert held is None and "cannot tell" in evidence
    assert demo._HELD[None] == "inconclusive"
    assert "MSE above 0.8 x predicting the mean" in demo.verdict(results[-1])


def test_run_prints_to_the_stdout_of_the_call(capsys):
    # stream defaulted to the sys.stdout of import time: redirect_stdout (notebooks, pytest's
    # capture) got nothing.
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        demo.run(quick=True, plot_png=False)
    assert "Demo finished" in buf.getvalue()
    assert "Demo finished" not in capsys.readouterr().out


def test_ctrl_c_is_one_line_and_status_130(tmp_path):
    import signal
    # SIGINT at its default in the child: a run started in the background by a shell (`cmd &`,
    # as a CI job may be) inherits it ignored, and Python then leaves it ignored.
    proc = subprocess.Popen(_pyrnn_exe() + ["demo", "--no-plot"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.stdout.readline()  # running (Python's SIGINT handler is in place)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    # Ended by SIGINT itself after its line (the shell reports 130): status 130 by exit() let
    # a shell loop go on with its next command (helper-166)
    assert proc.returncode == -signal.SIGINT, err
    assert "pyrnn demo: interrupted" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    res = subprocess.run(" ".join(_pyrnn_exe()) + " demo --quick --no-plot | head -1",
                         shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.stdout.startswith("pyrnn ") and "Traceback" not in res.stderr, res.stderr


def test_plot_without_matplotlib_writes_nothing(tmp_path, monkeypatch):
    # The test extras install matplotlib (the full demo test checks the real PNG); without
    # it, plot() says so by returning None and leaves no file.
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    results = [_result(c, 20, 0.1) | {"val_loss": [0.2, 0.1]} for c in ("RNN", "GRU")]
    assert demo.plot(results, {"loss": [1.0]}, str(tmp_path / "pyrnn_demo.png")) is None
    assert os.listdir(tmp_path) == []


def test_a_failed_plot_write_is_a_demo_error(tmp_path, monkeypatch):
    # After the whole run, an unwritable --out (/proc, a full disk) was a traceback and exit
    # 1; and savefig wrote the final path directly (a failure left half a PNG).
    import types
    from unittest import mock
    fig = mock.MagicMock()
    fig.savefig.side_effect = lambda f, **kw: f.write(b"png")
    plt = types.SimpleNamespace(subplots=lambda *a, **k: (fig, [mock.MagicMock() for _ in range(3)]),
                                close=lambda f: None)
    mpl = types.SimpleNamespace(use=lambda name: None, pyplot=plt)
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", plt)
    results = [_result(c, T, 0.1) | {"val_loss": [0.2, 0.1]} for c in ("RNN", "GRU")
               for T in (20, 100)]
    good = tmp_path / "ok" / "pyrnn_demo.png"
    assert demo.plot(results, {"loss": [1.0]}, str(good)) == str(good)
    assert good.read_bytes() == b"png" and os.listdir(good.parent) == ["pyrnn_demo.png"]
    # The mode open() would give (mkstemp's is 0600), and through a symlink, not over it.
    mask = os.umask(0)
    os.umask(mask)
    assert (good.stat().st_mode & 0o777) == 0o666 & ~mask
    link = tmp_path / "link.png"
    link.symlink_to(good)
    demo.plot(results, {"loss": [1.0]}, str(link))
    assert link.is_symlink() and os.listdir(good.parent) == ["pyrnn_demo.png"]
    (tmp_path / "file").write_text("a file")
    with pytest.raises(demo.DemoError, match="could not write"):
        demo.plot(results, {"loss": [1.0]}, str(tmp_path / "file" / "pyrnn_demo.png"))
    fig.savefig.side_effect = OSError(28, "No space left on device")
    with pytest.raises(demo.DemoError, match="No space left"):
        demo.plot(results, {"loss": [1.0]}, str(good))
    assert good.read_bytes() == b"png" and os.listdir(good.parent) == ["pyrnn_demo.png"]


def test_a_broken_pipe_that_is_not_stdout_is_reported(tmp_path):
    # bench --json into a pipe whose reader is gone: one line naming the error (the stdout
    # handling must not swallow it, nor point a working stdout at /dev/null), and --json, with
    # the results (helper-166: "[Errno 32] Broken pipe" alone, the results dropped).
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run(_pyrnn_exe() + ["bench", "--quick", "--no-torch", "--threads", "1",
                                             "--json", f"/dev/fd/{w}"], capture_output=True,
                             text=True, cwd=tmp_path, timeout=300, pass_fds=(w,))
    finally:
        os.close(w)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"pyrnn bench: --json /dev/fd/{w}: its reader has gone")
    assert '"results"' in res.stderr
    assert "Traceback" not in res.stderr and "| RNN forward" in res.stdout


def test_guarded_in_process_leaves_a_redirected_stdout_alone(capsys):
    import contextlib
    import io
    from pyrnn import cli

    def boom(args):
        raise BrokenPipeError(32, "Broken pipe")

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.guarded("bench", boom, None) == 1
    print("still here")
    assert "still here" in capsys.readouterr().out


def test_empty_lengths_mean_the_defaults():
    out = demo.run(quick=True, plot_png=False, lengths=(), stream=io.StringIO())
    assert sorted({r["T"] for r in out["adding"]}) == list(demo.QUICK["lengths"])


def test_char_windows_targets_are_the_next_characters():
    # Next-character prediction: each target window is its input window shifted by one.
    x, y = demo.char_windows(np.arange(10), 3, 3)
    np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(y, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_bench_json_write_failing_after_the_run_is_one_message(monkeypatch, capsys):
    # The path passes the check before the run (/dev/full is writable), the write after it
    # fails (no space): a traceback lost the measured results; now one message that carries
    # them, and status 2.
    from pyrnn import bench
    monkeypatch.setattr(bench, "run", lambda **kw: {"rows": [1, 2]})
    assert bench.main(["--quick", "--json", "/dev/full"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrnn bench: --json /dev/full: No space left on device")
    assert '"rows"' in err and "Traceback" not in err


def test_environment_values_that_are_not_utf8_give_the_documented_errors(tmp_path):
    # A Latin-1 value (b'x\xe9') made every message quoting it undecodable: pyrnn.info() and
    # each pass raised UnicodeDecodeError, `pyrnn info` / demo ended in a traceback.
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    code = ("import numpy as np, pyrnn\n"
            "print(pyrnn.info()['cpu_isa_error'])\n"
            "try:\n    pyrnn.GRU(2, 3)(np.ones((2, 1, 2)))\n"
            "except RuntimeError as e:\n    print('RuntimeError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**env, b"PYRNN_CPU_ISA": b"x\xe9"}, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("PYRNN_CPU_ISA='x\\xe9' names no CPU ISA"), out.stdout
    assert lines[1].startswith("RuntimeError PYRNN_CPU_ISA='x\\xe9'"), out.stdout
    out = subprocess.run(_pyrnn_exe() + ["demo", "--quick"], capture_output=True, text=True,
                         cwd=tmp_path, env={**env, b"PYRNN_CPU_ISA": b"x\xe9"}, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    code = ("import numpy as np, pyrnn\n"
            "try:\n    pyrnn.GRU(2, 3)(np.ones((2, 1, 2)))\n"
            "except MemoryError as e:\n    print('MemoryError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**env, b"PYRNN_MEMORY_LIMIT": b"4\xffG"}, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith(
        "MemoryError PYRNN_MEMORY_LIMIT='4\\xffG' is not a size"), (out.stdout, out.stderr)


def test_bench_json_is_written_whole_and_an_empty_path_refused(tmp_path, monkeypatch):
    # The JSON was written in place: a failed write (a full disk) left a cut file over the
    # previous good one; --json "" ran and wrote nothing (helper-141).
    from pyrnn import bench
    import argparse
    import pyrnn.serialize
    keep = tmp_path / "keep.json"
    keep.write_text('{"previous": true}')
    args = argparse.Namespace(json=str(keep), quick=True, threads=1, repeats=1, no_torch=True)
    monkeypatch.setattr(bench, "run", lambda **kw: {"ok": 1})

    def full(path, chunks):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pyrnn.serialize, "_atomic_write", full)
    assert bench.main_args(args) == 2  # (the results printed to stderr instead)
    assert json.loads(keep.read_text()) == {"previous": True}
    assert os.listdir(tmp_path) == ["keep.json"]
    args.json = ""
    assert bench.main_args(args) == 2
    out = _run(_pyrnn_exe() + ["bench", "--quick", "--json", ""], tmp_path, timeout=60)
    assert out.returncode == 2 and "--json : an empty path" in out.stderr, out.stderr


def test_bench_run_puts_the_thread_counts_back():
    # demo.run put them back; bench.run left both libraries at its count (helper-141).
    from pyrnn import bench
    torch = pytest.importorskip("torch")
    saved = pyrnn.get_num_threads(), torch.get_num_threads()
    pyrnn.set_num_threads(2)
    torch.set_num_threads(2)
    try:
        bench.run(quick=True, threads=1, repeats=1, stream=io.StringIO())
        assert pyrnn.get_num_threads() == 2 and torch.get_num_threads() == 2
    finally:
        pyrnn.set_num_threads(saved[0])
        torch.set_num_threads(saved[1])


def test_demo_out_problems_are_found_before_the_run(tmp_path):
    # os.access let /proc/x, /sys/x and a folder named pyrnn_demo.png through: the whole demo
    # ran, then failed (helper-141). A real create-and-delete check now, leaving nothing.
    (tmp_path / "o2" / "pyrnn_demo.png").mkdir(parents=True)
    for out in ("/proc/pyrnn_x", str(tmp_path / "o2")):
        assert demo._out_problem(out), out
    assert demo._out_problem(str(tmp_path / "new" / "deeper")) is None
    assert sorted(os.listdir(tmp_path)) == ["o2"]  # the check made nothing that stayed


def test_command_line_errors_are_one_line(tmp_path):
    # A bad PYRNN_MEMORY_LIMIT (or one too small) was a traceback from demo and bench
    # (helper-141).
    env = dict(os.environ, PYRNN_MEMORY_LIMIT="garbage")
    out = subprocess.run(_pyrnn_exe() + ["bench", "--quick", "--no-torch", "--threads", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("pyrnn bench: PYRNN_MEMORY_LIMIT='garbage' is not a size")
    env["PYRNN_MEMORY_LIMIT"] = "100K"
    out = subprocess.run(_pyrnn_exe() + ["bench", "--quick", "--no-torch", "--threads", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "more than PYRNN_MEMORY_LIMIT (100.0 KiB)" in out.stderr


def test_output_files_in_place_where_a_rename_would_be_wrong(tmp_path):
    # /dev/stdout redirected to a file is a regular file: the rename replaced the file the
    # shell had opened (the run's table and later output lost); a file in a read-only folder
    # was refused though open() could write it; a dangling link's target folder was checked
    # as the link's (helper-145).
    from pyrnn import _outfile
    log = tmp_path / "log.txt"
    code = ("import sys; print('table'); sys.stdout.flush(); from pyrnn import _outfile; "
            "assert _outfile.problem('/dev/stdout') is None; "
            "_outfile.write_file('/dev/stdout', '{\"json\": 1}\\n'); print('after')")
    with open(log, "w") as f:
        f.write("PREVIOUS\n")
    with open(log, "a") as f:  # >>
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=tmp_path)
    assert log.read_text() == 'PREVIOUS\ntable\n{"json": 1}\nafter\n'
    # > (a second handle's offset overwrote the buffered table, and "after" the JSON;
    # helper-148): through the descriptor itself, buffered output flushed first
    code = code.replace("sys.stdout.flush(); ", "").replace("\\n'", "'")
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=tmp_path)
    assert log.read_text() == 'table\n{"json": 1}\nafter\n'
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "runs" / "r1.json")  # its folder does not exist yet
    assert _outfile.problem(str(link)) is None and not (tmp_path / "runs").exists()
    _outfile.write_file(str(link), "x")
    assert (tmp_path / "runs" / "r1.json").read_text() == "x" and link.is_symlink()
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder anyway")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "r.json").write_text("old")
    ro.chmod(0o555)
    try:
        assert _outfile.problem(str(ro / "r.json")) is None
        _outfile.write_file(str(ro / "r.json"), "new")
        assert (ro / "r.json").read_text() == "new"
        assert _outfile.problem(str(ro / "other.json"))  # a new file there cannot be made
    finally:
        ro.chmod(0o755)


def test_demo_out_problems_name_the_png_path(tmp_path):
    (tmp_path / "o2" / "pyrnn_demo.png").mkdir(parents=True)
    (tmp_path / "afile").write_text("x")
    assert demo._out_problem(str(tmp_path / "o2")) == (
        f"{tmp_path / 'o2' / 'pyrnn_demo.png'}: a folder, not a file path")
    assert demo._out_problem(str(tmp_path / "afile")).startswith(
        f"{tmp_path / 'afile' / 'pyrnn_demo.png'}: not a writable file path")


def test_descriptor_outputs_a_non_blocking_stdout_and_a_read_only_descriptor(tmp_path):
    # os.write on an inherited non-blocking stdout stopped at the pipe's 64 KiB; a descriptor
    # open for reading passed the check and failed after the run (helper-150).
    code = ("import os, sys; from pyrnn import _outfile; os.set_blocking(1, False); "
            "_outfile.write_file('/dev/stdout', 'x' * 500000)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    import time
    time.sleep(1.0)  # the pipe fills; the writer must wait, not fail
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and len(out) == 500001, err
    (tmp_path / "in.txt").write_text("x")
    code = "from pyrnn import _outfile; print(_outfile.problem('/dev/fd/3'))"
    out = subprocess.run(["bash", "-c", f'"$0" -c "{code}" 3< in.txt', sys.executable],
                         capture_output=True, text=True, cwd=tmp_path)
    assert "descriptor 3 is not open for writing" in out.stdout, out.stderr
    out = subprocess.run(["bash", "-c", f'"$0" -c "{code}" 3> out.txt', sys.executable],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout == "None\n", out.stderr


# ---- from a hunt (helper-166): the command line's failures are one line, its results kept ----


def test_ctrl_c_stops_a_shell_loop(tmp_path):
    import signal
    exe = " ".join(_pyrnn_exe())
    script = (f"for i in 1 2; do {exe} demo --quick --no-plot; echo \"after $i $?\"; done; "
              "echo loop-ended")
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.stdout.readline()  # the first demo runs
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "pyrnn demo: interrupted" in err and "Traceback" not in err
    assert "after 2" not in out and "loop-ended" not in out, out


def test_the_system_refusing_threads_is_one_line_and_keeps_the_results(tmp_path, monkeypatch,
                                                                       capsys):
    # Putting the thread count back after the run raised (the threads refused by a process
    # limit): the table printed, then a traceback, and the JSON never written.
    from pyrnn import cli
    real = pyrnn.set_num_threads
    refused = RuntimeError("cannot start 2 threads: the system refused thread 2 (Resource "
                           "temporarily unavailable)")

    def restore_refused(n):
        if n != 1:
            raise refused
        real(n)
    before = pyrnn.get_num_threads()
    monkeypatch.setattr(pyrnn, "set_num_threads", restore_refused)
    out = tmp_path / "b.json"
    try:
        assert cli.main(["bench", "--quick", "--no-torch", "--repeats", "1", "--threads", "1",
                         "--json", str(out)]) == 0
        assert json.loads(out.read_text())["results"]
        # refused from the start (no --threads: the library's default): one line, status 2
        monkeypatch.setattr(pyrnn, "set_num_threads", lambda n: (_ for _ in ()).throw(refused))
        capsys.readouterr()
        assert cli.main(["demo", "--quick", "--no-plot", "--threads", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pyrnn demo: cannot start 2 threads") and "--threads" in err
        assert "Traceback" not in err
    finally:
        monkeypatch.undo()
        pyrnn.set_num_threads(before)


def test_a_full_disk_under_stdout_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        res = subprocess.run(_pyrnn_exe() + ["info"], stdout=full, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("pyrnn info: ") and "No space left" in res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_bench_refusing_to_time_is_one_line(monkeypatch, capsys):
    from pyrnn import bench, cli

    def disagree(**kw):
        raise RuntimeError("RNN forward: pyrnn and PyTorch disagree (max |diff| 1); not "
                           "timing them")
    monkeypatch.setattr(bench, "run", disagree)
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err == "pyrnn bench: RNN forward: pyrnn and PyTorch disagree (max |diff| 1); not " \
                  "timing them\n"


def test_bench_runs_without_a_torch_that_fails_to_import(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libtorch_cpu.so: cannot open shared "
                                      "object file')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    res = subprocess.run(_pyrnn_exe() + ["bench", "--quick", "--repeats", "1", "--threads", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "PyTorch: import failed (OSError: libtorch_cpu.so" in res.stdout


def test_bench_json_dash_is_stdout_and_a_link_to_stdout_is_written_through_it(tmp_path):
    # "-" made a file named "-"; a link to /dev/stdout was renamed over the file the shell
    # opened (the table and the "wrote" line lost).
    # stdout is the JSON alone (| jq), the table on stderr
    log = tmp_path / "out.txt"
    with open(log, "w") as f:
        res = subprocess.run(_pyrnn_exe() + ["bench", "--quick", "--no-torch", "--repeats", "1",
                                             "--threads", "1", "--json", "-"],
                             stdout=f, stderr=subprocess.PIPE, text=True, check=True,
                             cwd=tmp_path, timeout=300)
    assert json.loads(log.read_text())["results"]
    assert "| RNN forward" in res.stderr and "wrote /dev/stdout" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]
    (tmp_path / "so.json").symlink_to("/dev/stdout")
    code = ("print('table'); from pyrnn import _outfile; "
            "assert _outfile.problem('so.json') is None; "
            "_outfile.write_file('so.json', '{}'); print('after')")
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=tmp_path,
                       timeout=120)
    assert log.read_text() == "table\n{}\nafter\n"
    assert (tmp_path / "so.json").is_symlink()



def test_a_link_to_stdout_through_a_linked_folder_is_resolved_physically(tmp_path):
    # ".." in a link's target was taken from the link's path as written: past a linked folder
    # it named another place (a regular file taken for stdout, or stdout for a file; helper-169)
    from pyrnn import _outfile
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "l").symlink_to(deep)  # l -> a/b/c
    # l/out -> ".." enough times to reach / from l as written, then dev/stdout: physically
    # (from a/b/c) two folders short of /, so not stdout
    ups = len(tmp_path.parts)  # (the parts of tmp_path/l less one: "/" counts as one)
    (deep / "out").symlink_to("../" * ups + "dev/stdout")
    assert os.path.realpath(tmp_path / "l" / "out") != "/dev/stdout"
    assert _outfile._own_descriptor(str(tmp_path / "l" / "out")) is None
    # and through a linked folder to /: stdout
    (deep / "to_root").symlink_to("/")
    (deep / "so").symlink_to("to_root/dev/stdout")
    assert _outfile._own_descriptor(str(tmp_path / "l" / "so")) == 1
    # a descriptor named through a linked folder, or a thread's table (helper-172: written
    # through a rename, over the file the shell had opened)
    (tmp_path / "pfd").symlink_to("/proc/self/fd")
    (tmp_path / "ddev").symlink_to("/dev")
    for name in (tmp_path / "pfd" / "1", tmp_path / "ddev" / "fd" / "1", "/proc/thread-self/fd/1",
                 f"/proc/self/task/{threading.get_native_id()}/fd/1"):
        assert _outfile._own_descriptor(str(name)) == 1, name
    assert _outfile._own_descriptor(f"/proc/{os.getppid()}/fd/1") is None
    for name in ("/proc/self/task/999999999/fd/1",  # (no such thread here)
                 f"/proc/thread-self/task/{threading.get_native_id()}/fd/1"):  # (no such path)
        assert _outfile._own_descriptor(name) is None, name


def test_ctrl_c_with_stdout_closed_is_one_line(tmp_path):
    import signal
    # Started with stdout closed (`>&-`), sys.stdout is None: the flush before the SIGINT end
    # raised AttributeError (a traceback after "interrupted")
    proc = subprocess.Popen(_pyrnn_exe() + ["demo", "--no-plot"], cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                                                os.close(1)))
    try:
        time.sleep(3)  # (nothing on stdout to wait for: past the imports)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "pyrnn demo: interrupted" in err and "Traceback" not in err, err
    assert proc.returncode == -signal.SIGINT


def test_python_m_demo_ends_by_sigint_too(tmp_path):
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "pyrnn.demo", "--no-plot"], cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "interrupted" in err and proc.returncode == -signal.SIGINT, err


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"),
                                   NotImplementedError(), RuntimeError()])
def test_an_internal_error_keeps_its_traceback(error):
    # guarded's one line is for what the system or pyrnn refuses in words; these are bugs
    from pyrnn import cli

    def fails(args):
        raise error
    with pytest.raises(type(error)):
        cli.guarded("demo", fails, None)
