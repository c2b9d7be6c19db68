"""The seeds' C++ examples (examples/cpp) built against the installed package through
find_package(pyrnn) and run: each exits 0, and rnn_sine really learns (with Adam and SGD)."""
import re
import shutil
import subprocess

import pytest

import pyrnn

cmake = shutil.which("cmake")
pytestmark = pytest.mark.skipif(cmake is None, reason="cmake is not installed")

EXAMPLES = ["lstm_basic", "lstm_cell_state", "gru_basic", "rnn_sine"]


def _run(cmd, timeout=120):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def example_dir(repo_root, tmp_path_factory):
    """Configure and build examples/cpp once, against pyrnn.get_cmake_dir()."""
    build = tmp_path_factory.mktemp("cpp_examples")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run([cmake, "-S", repo_root / "examples" / "cpp", "-B", build, "-DCMAKE_BUILD_TYPE=Release",
          f"-Dpyrnn_DIR={pyrnn.get_cmake_dir()}", *generator])
    _run([cmake, "--build", build, "--parallel", "2"], timeout=300)
    return build


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(example_dir, name):
    res = _run([example_dir / name])
    assert res.stdout.strip(), f"{name} printed nothing"


def test_lstm_cell_state_example_reports_consistent_states(example_dir):
    res = _run([example_dir / "lstm_cell_state"])
    assert "final cell state c_T: 1 x 64" in res.stdout
    assert "|h_t| <= tanh(|c_t|) at every step and unit: yes" in res.stdout


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_rnn_sine_learns(example_dir, optimizer):
    res = _run([example_dir / "rnn_sine", optimizer])
    m = re.search(r"train loss ([0-9.]+) -> ([0-9.]+), held-out loss ([0-9.]+) -> ([0-9.]+): "
                  r"learned", res.stdout)
    assert m, res.stdout
    first, last, first_held, last_held = map(float, m.groups())
    assert last < 0.05 * first and last_held < 0.05 * first_held, res.stdout
    # Another set than the training one in effect (phases alone printed the same losses).
    assert abs(first_held - first) > 0.1 * first, res.stdout
    # The loss is printed every 50 epochs from epoch 0.
    assert res.stdout.count("loss") >= 6


@pytest.mark.parametrize("args", [["adam", "abc"], ["sgd", "0"], ["adam", "99999999999999"],
                                  ["adam", "12x"], ["rmsprop"]])
def test_rnn_sine_refuses_bad_arguments(example_dir, args):
    # atoi made "99999999999999" an overflowed count that ran for ever.
    res = subprocess.run([str(example_dir / "rnn_sine"), *args], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "usage: rnn_sine" in res.stderr


def _cublas_root():
    """PYRNN_CUBLAS_ROOT, else the nvidia-cublas wheel's nvidia/cu* folder, else None."""
    import glob
    import os
    root = os.environ.get("PYRNN_CUBLAS_ROOT")
    if root:
        return root
    try:
        import nvidia
    except ImportError:
        return None
    for base in getattr(nvidia, "__path__", []):
        hits = sorted(glob.glob(os.path.join(base, "cu*", "lib", "libcublas.so.*")))
        if hits:
            return os.path.dirname(os.path.dirname(hits[-1]))
    return None


def test_cuda_example_builds_and_runs(repo_root, tmp_path):
    """examples/cpp_cuda (the seeds' GPU example) compiles and links against the installed
    package; it runs everywhere (without a device it prints why and exits 0) and, with one,
    checks the GPU layer against the CPU layer."""
    import pyrnn.cuda
    if not pyrnn.cuda.is_compiled():
        pytest.skip("pyrnn built without the CUDA backend")
    root = _cublas_root()
    import os
    if root is None and not os.path.isfile("/usr/local/cuda/include/cublas_v2.h"):
        pytest.skip("no cuBLAS to link (set PYRNN_CUBLAS_ROOT)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    extra = [f"-DPYRNN_CUBLAS_ROOT={root}"] if root else []
    _run([cmake, "-S", repo_root / "examples" / "cpp_cuda", "-B", tmp_path, "-DCMAKE_BUILD_TYPE=Release",
          f"-Dpyrnn_DIR={pyrnn.get_cmake_dir()}", *generator, *extra])
    _run([cmake, "--build", tmp_path], timeout=300)
    res = _run([tmp_path / "lstm_cuda"])
    from _emulation import EMULATED  # the example links the real library, not the emulation
    if pyrnn.cuda.is_available() and not EMULATED:
        assert "max |GPU - CPU|" in res.stdout
    else:
        assert "no CUDA device" in res.stdout
