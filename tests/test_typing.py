"""The public API's annotations, checked with mypy as a user's IDE / CI would check them.

- tests/typing_cases/user_ok.py, a PyTorch / Keras user's script over the whole API (layers,
  Sequential, fit with callbacks, forward / backward, optimizers, losses, init, save / load,
  torch interop, pyrnn.cuda), must pass ``mypy --strict`` with no error;
- tests/typing_cases/user_bad.py holds deliberate mistakes, one per line marked "# E<n>"
  (a str hidden size, a misspelt keyword, a method that does not exist, ...): mypy must report
  every one of them, so a regression to untyped (Any) signatures fails here;
- the pyrnn package itself must pass mypy's default mode (annotated bodies checked) with
  --warn-unused-ignores. Not --strict: the private helpers are deliberately left unannotated
  (strict would demand annotations on every one of them, a thousand errors of no use to users).

Flags for the user scripts: the whole of --strict. Nothing had to be dropped for NumPy (its
bundled annotations type-check under --strict); torch and onnx are not analysed
(follow_imports = skip: torch's own sources take minutes, and their types are not what is
tested here), so their objects are Any to mypy.
"""
import os
import re
import shutil
import sys

import pytest

mypy_api = pytest.importorskip("mypy.api")

import pyrnn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "typing_cases")

CONFIG = """\
[mypy]
strict = True
warn_unused_configs = True
cache_dir = {cache}

[mypy-torch.*,onnx.*,onnxruntime.*,tqdm.*,matplotlib.*]
follow_imports = skip
ignore_missing_imports = True
"""


def _mypy(tmp_path, *args):
    # mypy searches the working directory first: run from a checkout's root (as CI runs
    # `pytest tests`), it took the source tree's pyrnn for user code and checked its private
    # helpers under --strict. From tmp_path it finds the installed package (py.typed), as a
    # user's project does.
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return _run_mypy(tmp_path, *args)
    finally:
        os.chdir(old_cwd)


def _run_mypy(tmp_path, *args):
    cfg = tmp_path / "mypy.ini"
    cfg.write_text(CONFIG.format(cache=tmp_path / ".mypy_cache"))
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(cfg), "--python-executable", sys.executable,
         "--no-error-summary", "--show-error-codes", *args])
    return stdout, stderr, status


def _case(tmp_path, name):
    dst = tmp_path / name
    shutil.copy(os.path.join(CASES, name), dst)
    return dst


def test_user_script_passes_strict(tmp_path):
    script = _case(tmp_path, "user_ok.py")
    stdout, stderr, status = _mypy(tmp_path, str(script))
    assert status == 0 and not stdout.strip(), f"mypy --strict found errors:\n{stdout}{stderr}"


def test_readme_snippets_pass_strict(tmp_path):
    # README promises a user's script passes mypy --strict; its interop snippet did not (load
    # and from_torch return unions; helper-146). The self-contained snippets (those that start
    # with their imports; torch's own from_dlpack stub is not pyrnn's to fix).
    import re
    readme = os.path.join(os.path.dirname(CASES), "..", "README.md")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", open(readme).read(), re.S)
              if b.startswith("import") and "from_dlpack" not in b]
    assert len(blocks) >= 3
    paths = []
    for i, b in enumerate(blocks):
        paths.append(tmp_path / f"readme_{i}.py")
        paths[-1].write_text(b)
    stdout, stderr, status = _mypy(tmp_path, *map(str, paths))
    assert status == 0 and not stdout.strip(), f"mypy --strict found errors:\n{stdout}{stderr}"


def test_type_errors_are_reported(tmp_path):
    script = _case(tmp_path, "user_bad.py")
    marked = {i: m.group(1) for i, line in enumerate(script.read_text().splitlines(), 1)
              if (m := re.search(r"# (E\d+)\b", line))}
    assert len(marked) >= 10
    stdout, stderr, status = _mypy(tmp_path, str(script))
    assert status == 1, f"mypy did not fail:\n{stdout}{stderr}"
    flagged = {int(m.group(1)) for m in re.finditer(r"user_bad\.py:(\d+): error:", stdout)}
    missed = sorted(marked[i] for i in set(marked) - flagged)
    assert not missed, f"mypy did not report {missed}:\n{stdout}"
    unexpected = sorted(flagged - set(marked))
    assert not unexpected, f"errors on unmarked lines {unexpected}:\n{stdout}"


def _package_dir():
    """The pyrnn sources: the checkout's (tests run from one) when it has the stubs, else the
    installed package."""
    src = os.path.join(os.path.dirname(HERE), "pyrnn")
    if os.path.exists(os.path.join(src, "_core.pyi")):
        return src
    return os.path.dirname(pyrnn.__file__)


def test_package_passes_mypy(tmp_path):
    pkg = _package_dir()
    cfg = tmp_path / "pkg.ini"
    # Default mode (not strict, see the module docstring), unused ignores reported.
    cfg.write_text(CONFIG.format(cache=tmp_path / ".mypy_cache")
                   .replace("strict = True", "warn_unused_ignores = True"))
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(cfg), "--python-executable", sys.executable,
         "--show-error-codes", "--ignore-missing-imports", pkg])
    assert status == 0, f"mypy found errors in {pkg}:\n{stdout}{stderr}"
