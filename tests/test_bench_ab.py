"""benchmarks/ab_builds.py: alternating processes of two builds, the JSON it writes (here the
installed build against itself, a quick run). Timings are never asserted."""
import json

import pytest
from _scripts import load_script


def test_quick_run_writes_paired_ratios(tmp_path):
    ab = load_script("ab_builds")
    out = tmp_path / "ab.json"
    specs = ["RNN,3,2,4,5,fwd", "GRU,3,2,4,5,fwdbwd"]
    assert ab.main(["--a", "", "--b", "", "--threads", "1", "--rounds", "2", "--budget", "0.05",
                    "--dtype", "float32", "--specs", *specs, "--labels", "x", "y",
                    "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "ab_builds" and doc["machine"]["cpu"] and doc["rounds"] == 2
    assert doc["a"]["label"] == "x" and doc["b"]["label"] == "y" and doc["a"]["isa"]
    assert [r["spec"] for r in doc["results"]] == specs
    for r in doc["results"]:
        assert r["threads"] == 1 and r["a_ms"] > 0 and r["b_ms"] > 0 and len(r["ratios"]) == 2
        assert r["ratio_b_over_a"] > 0


def test_bad_specs_and_a_failing_build_are_reported(tmp_path):
    ab = load_script("ab_builds")
    with pytest.raises(SystemExit):
        ab.main(["--a", "", "--b", "", "--specs", "LSTM,5,2,4"])
    with pytest.raises(SystemExit):
        ab.main(["--a", "", "--b", "", "--specs", "CNN,5,2,4,4,fwd"])
    bad = tmp_path / "site"
    (bad / "pyrnn").mkdir(parents=True)
    (bad / "pyrnn" / "__init__.py").write_text("raise ImportError('not a build')\n")
    with pytest.raises(RuntimeError, match="not a build"):
        ab.main(["--a", str(bad), "--b", "", "--threads", "1", "--rounds", "1", "--budget",
                 "0.01", "--specs", "RNN,2,1,2,2,fwd"])


def test_a_build_path_that_is_not_the_build_imported_is_refused(tmp_path, monkeypatch):
    # A relative --a was looked up from $HOME (where the child runs), and a missing one
    # skipped: the installed build was timed against itself as "A vs B" (helper-141).
    ab = load_script("ab_builds")
    with pytest.raises(SystemExit):
        ab.main(["--a", str(tmp_path / "no-such-build"), "--b", ""])
    site = tmp_path / "site"
    (site / "pyrnn").mkdir(parents=True)
    (site / "pyrnn" / "__init__.py").write_text("raise ImportError('the stub build')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="the stub build"):  # found, made absolute
        ab.main(["--a", "site", "--b", "", "--threads", "1", "--rounds", "1", "--budget",
                 "0.01", "--specs", "RNN,2,1,2,2,fwd"])
    empty = tmp_path / "empty"  # a folder without pyrnn: the installed one would be imported
    empty.mkdir()
    with pytest.raises(RuntimeError, match="not from the build at"):
        ab.main(["--a", str(empty), "--b", "", "--threads", "1", "--rounds", "1", "--budget",
                 "0.01", "--specs", "RNN,2,1,2,2,fwd"])
    with pytest.raises(SystemExit):  # checked before the run
        ab.main(["--a", "", "--b", "", "--out", str(tmp_path)])
