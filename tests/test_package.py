"""The installed package: version, info, CLI, Matrix views, paths for C++ users."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pyrnn


def test_imported_from_installed_package(repo_root):
    # The suite must exercise the built package, not the source tree.
    assert not os.path.dirname(os.path.abspath(pyrnn.__file__)).startswith(str(repo_root / "pyrnn"))


def test_version_matches_header(repo_root):
    header = (repo_root / "cpp/include/pyrnn/version.h").read_text()
    assert f'"{pyrnn.__version__}"' in header


def test_info_keys_and_types():
    info = pyrnn.info()
    for key in ("version", "cpu_isa", "available_isas", "num_threads", "cuda_compiled",
                "cuda_available", "cuda_devices"):
        assert key in info
    assert info["version"] == pyrnn.__version__
    assert info["cpu_isa"] in info["available_isas"]
    assert "scalar" in info["available_isas"]
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert info["cpu_wait_policy"] in ("spin", "passive")
    assert isinstance(info["cuda_compiled"], bool)
    if not info["cuda_available"]:
        assert info["cuda_devices"] == [] and info["cuda_unavailable_reason"]
    assert isinstance(info["memory_limit"], int) and info["memory_limit"] > 0
    assert info["memory_limit_error"] is None


def test_cli_info_names_a_memory_limit_that_is_no_size(tmp_path):
    # It said nothing (status 0) while demo and bench then refused their first layer.
    env = dict(os.environ, PYRNN_MEMORY_LIMIT="abc")
    out = subprocess.run([sys.executable, "-m", "pyrnn", "info"], capture_output=True,
                         text=True, cwd=tmp_path, check=True, env=env)
    line = next(s for s in out.stdout.splitlines() if s.startswith("memory limit status"))
    assert "PYRNN_MEMORY_LIMIT='abc' is not a size" in line and "refused" not in line
    assert "memory limit           every allocation refused: PYRNN_MEMORY_LIMIT" in out.stdout
    env["PYRNN_MEMORY_LIMIT"] = "1G"
    out = subprocess.run([sys.executable, "-m", "pyrnn", "info", "--json"], capture_output=True,
                         text=True, cwd=tmp_path, check=True, env=env)
    facts = json.loads(out.stdout)
    assert facts["memory_limit"] == 2**30 and facts["memory_limit_error"] is None
    env["PYRNN_MEMORY_LIMIT"] = "10"
    out = subprocess.run([sys.executable, "-m", "pyrnn", "info"], capture_output=True,
                         text=True, cwd=tmp_path, check=True, env=env)
    assert "10 bytes per request (10 bytes)" in out.stdout


@pytest.mark.parametrize("cmd", [["pyrnn", "info"], [sys.executable, "-m", "pyrnn", "info"]])
def test_cli_info(cmd, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "pyrnn") if cmd[0] == "pyrnn" else cmd[0]
    out = subprocess.run([exe] + cmd[1:], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert pyrnn.__version__ in out.stdout and "CPU kernels" in out.stdout


def test_cli_info_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyrnn", "info", "--json"], capture_output=True,
                         text=True, cwd=tmp_path, check=True)
    assert json.loads(out.stdout)["version"] == pyrnn.__version__


def test_cli_without_command_prints_help(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyrnn"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and "info" in out.stdout


def test_threads_setting_and_errors():
    saved = pyrnn.get_num_threads()
    try:
        pyrnn.set_num_threads(1)
        assert pyrnn.get_num_threads() == 1
        with pytest.raises(ValueError, match="num_threads"):
            pyrnn.set_num_threads(0)
        with pytest.raises(TypeError):
            pyrnn.set_num_threads(1.5)
    finally:
        pyrnn.set_num_threads(saved)


def test_cpu_isa_setting_and_errors():
    saved = pyrnn.get_cpu_isa()
    try:
        for isa in pyrnn.info()["available_isas"]:
            pyrnn.set_cpu_isa(isa)
            assert pyrnn.get_cpu_isa() == isa
        with pytest.raises(ValueError, match="sse9"):
            pyrnn.set_cpu_isa("sse9")
        missing = {"scalar", "avx2", "avx512"} - set(pyrnn.info()["available_isas"])
        for isa in missing:
            with pytest.raises(ValueError, match="not supported"):
                pyrnn.set_cpu_isa(isa)
    finally:
        pyrnn.set_cpu_isa(saved)


def test_an_isa_the_cpu_lacks_is_refused_by_the_setter_and_the_environment(tmp_path):
    # The refusals above only run on a CPU without AVX-512; capping the detected ISAs (a
    # test hook) runs them on any machine: set_cpu_isa, and PYRNN_CPU_ISA read at import.
    code = (
        "import numpy as np, pyrnn, pyrnn._core as c\n"
        "def attempt(f):\n"
        "    try:\n"
        "        return f()\n"
        "    except (ValueError, RuntimeError) as e:\n"
        "        return f'{type(e).__name__}: {e}'\n"
        "print(pyrnn.get_cpu_isa())\n"
        "c._cap_cpu_isa_for_tests('scalar')\n"
        "print(pyrnn.info()['available_isas'])\n"
        "print(attempt(pyrnn.get_cpu_isa))\n"
        "print(attempt(lambda: pyrnn.set_cpu_isa('avx2')))\n"
        "pyrnn.set_cpu_isa('scalar')\n"
        "print(pyrnn.get_cpu_isa(), pyrnn.LSTM(3, 4)(np.ones((2, 1, 3), np.float32))[0].shape)\n"
        "c._cap_cpu_isa_for_tests('avx512')\n"
        "print(pyrnn.get_cpu_isa())\n")
    env = dict(os.environ, PYRNN_CPU_ISA="avx2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if lines[0] != "avx2":
        pytest.skip("this CPU has no AVX2")
    assert lines[1:] == [
        "['scalar']",
        "RuntimeError: PYRNN_CPU_ISA='avx2' is not supported by this CPU (unset it, or choose "
        "one with set_cpu_isa)",
        "ValueError: CPU ISA 'avx2' is not supported by this CPU (available: scalar)",
        "scalar (2, 1, 4)",
        "avx2"], out.stdout


@pytest.mark.parametrize("value", ["scalar", " SCALAR "])  # case and blanks forgiven
def test_cpu_isa_environment_override(tmp_path, value):
    code = "import pyrnn; print(pyrnn.get_cpu_isa())"
    env = dict(os.environ, PYRNN_CPU_ISA=value)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip() == "scalar"


def test_bad_cpu_isa_environment_is_named_and_recoverable(tmp_path):
    # Every use names the variable, and set_cpu_isa still works (a throwing static initialiser
    # used to make the process unusable: even set_cpu_isa raised).
    code = ("import numpy as np, pyrnn\n"
            "for f in (pyrnn.get_cpu_isa, lambda: pyrnn.LSTM(3, 4)(np.ones((2, 1, 3), np.float32))):\n"
            "    try:\n"
            "        f(); print('no error')\n"
            "    except RuntimeError as e:\n"
            "        print('error:', e)\n"
            "pyrnn.set_cpu_isa('scalar')\n"
            "print(pyrnn.get_cpu_isa(), pyrnn.LSTM(3, 4)(np.ones((2, 1, 3), np.float32))[0].shape)\n")
    env = dict(os.environ, PYRNN_CPU_ISA="avx3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    for line in lines[:2]:
        assert line.startswith("error: PYRNN_CPU_ISA='avx3' names no CPU ISA"), line
    assert lines[2] == "scalar (2, 1, 4)"


# Small values, below any machine's own limit (which the variable can only lower); the
# larger suffixes are covered by the C++ grammar test.
@pytest.mark.parametrize("value, expect", [("64M", 64 << 20), ("64 MiB", 64 << 20),
                                           ("512KB", 512 << 10), (" 1.5k ", 1536), ("123", 123),
                                           ("0.0625g", 64 << 20), ("64MIB", 64 << 20),
                                           ("64mib", 64 << 20)])
def test_memory_limit_environment_forms(tmp_path, value, expect):
    code = "import pyrnn._core as c; print(c.memory_limit())"
    env = dict(os.environ, PYRNN_MEMORY_LIMIT=value)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True)
    assert int(out.stdout) == expect


@pytest.mark.parametrize("value", ["5x", "1 x", "G", "-1G", "0", "nan", "1e400", "4GG"])
def test_bad_memory_limit_environment_is_refused_by_name(tmp_path, value):
    # A typo used to become a limit of a few bytes (or none) without a word.
    code = ("import numpy as np, pyrnn\n"
            "try:\n"
            "    pyrnn.LSTM(3, 4); print('no error')\n"
            "except MemoryError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYRNN_MEMORY_LIMIT=value)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"PYRNN_MEMORY_LIMIT='{value}' is not a size"), out.stdout


def test_cuda_module_is_an_attribute_after_import(tmp_path):
    code = "import pyrnn; print(pyrnn.cuda.is_available() in (True, False))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matrix_is_a_zero_copy_view(dtype):
    m = pyrnn.Matrix(3, 4, dtype)
    assert m.shape == (3, 4) and m.rows == 3 and m.cols == 4 and m.dtype == np.dtype(dtype)
    a = m.numpy()
    assert a.shape == (3, 4) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous
    assert a.ctypes.data % 64 == 0  # aligned storage
    a[1, 2] = 5.0
    assert m.get(1, 2) == 5.0
    m.set(2, 3, -1.5)
    assert a[2, 3] == -1.5
    del m  # the view keeps the native matrix alive
    assert a[2, 3] == -1.5


def test_matrix_errors_and_copy():
    m = pyrnn.Matrix(2, 2)
    with pytest.raises(IndexError, match="out of range"):
        m.get(2, 0)
    with pytest.raises(TypeError):
        pyrnn.Matrix(2, 2, "int32")
    src = np.arange(6, dtype=np.float64).reshape(2, 3)
    c = pyrnn.Matrix.from_numpy(src)
    assert c.dtype == np.float64 and np.array_equal(np.asarray(c), src)
    with pytest.raises(ValueError, match="2-D"):
        pyrnn.Matrix.from_numpy(np.zeros(3))


def test_paths_for_cpp_users():
    inc = pyrnn.get_include()
    assert os.path.isfile(os.path.join(inc, "pyrnn", "pyrnn.h"))
    assert os.path.isfile(os.path.join(pyrnn.get_cmake_dir(), "pyrnnConfig.cmake"))
    assert os.path.isfile(os.path.join(pyrnn.get_cmake_dir(), "pyrnnConfigVersion.cmake"))


def test_cmake_prefix_entry_point():
    from importlib.metadata import entry_points
    eps = entry_points(group="cmake.prefix")
    assert any(ep.name == "pyrnn" and ep.value == "pyrnn" for ep in eps)


def test_parameter_views_are_writable_native_memory():
    layer = pyrnn.LSTM(3, 4, seed=0)
    w = layer.params["weight_ih_l0"]
    assert w.flags.writeable and w.shape == (16, 3)
    w[...] = 0.25
    assert np.all(layer.params["weight_ih_l0"] == 0.25)


def test_cuda_module_runpath_is_relative(tmp_path):
    # pyrnn._cuda had no RUNPATH at all (only the preload of an `nvidia` package found
    # libcublas); it must not carry the build folder's absolute path either, which would travel
    # in every wheel (CI's is under /tmp, deleted after the build: an untrusted search path).
    import importlib.util
    import shutil
    spec = importlib.util.find_spec("pyrnn._cuda")
    if spec is None or shutil.which("readelf") is None:
        pytest.skip("pyrnn._cuda is not built, or readelf is missing")
    dyn = subprocess.run(["readelf", "-d", spec.origin], capture_output=True, text=True).stdout
    if "libcublas" not in dyn:
        pytest.skip("the host emulation build links no cuBLAS")
    runpath = [line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines()
               if "RUNPATH" in line or "RPATH" in line]
    assert runpath, "pyrnn._cuda has no RUNPATH for libcublas"
    dirs = runpath[0].split(":")
    assert "$ORIGIN/../nvidia/cu13/lib" in dirs  # an nvidia-cublas wheel beside pyrnn
    assert all(d.startswith("$ORIGIN") for d in dirs), dirs


def test_cublas_preload_reads_pyrnn_cublas_root(tmp_path, monkeypatch):
    # A cuBLAS outside any nvidia wheel (a toolkit, another environment): PYRNN_CUBLAS_ROOT, the
    # build's variable, names it at run time too.
    import ctypes
    import pyrnn.cuda as pc
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("libcublas.so.13", "libcublasLt.so.13"):
        (lib / name).write_bytes(b"")
    loaded = []
    monkeypatch.setenv("PYRNN_CUBLAS_ROOT", str(tmp_path))
    monkeypatch.setattr(ctypes, "CDLL", lambda path, mode=0: loaded.append(path))
    pc._preload_cublas()
    assert loaded[:2] == [str(lib / "libcublasLt.so.13"), str(lib / "libcublas.so.13")]


def test_device_array_type_checks_work_without_the_backend(monkeypatch):
    # On a CPU-only install, isinstance(x, pyrnn.cuda.DeviceArray) raised RuntimeError (the
    # attribute loaded the missing extension); it is now False, and making one says why.
    import pyrnn.cuda as c
    monkeypatch.setattr(c, "_loaded", True)
    monkeypatch.setattr(c, "_module", None)
    monkeypatch.setattr(c, "_error", "simulated: built without the CUDA backend")
    DA = c.DeviceArray
    assert DA.__name__ == "DeviceArray"
    assert not isinstance(np.zeros(3), DA) and not isinstance(object(), DA)
    for make in (lambda: DA.empty(3), lambda: DA.from_numpy(np.zeros(3)), lambda: DA()):
        with pytest.raises(RuntimeError, match="CUDA backend is unavailable: simulated"):
            make()
    with pytest.raises(RuntimeError, match="simulated"):
        c.NativeRecurrentCUDA


def test_export_onnx_names_a_wrong_argument_before_needing_onnx(monkeypatch):
    # Without onnx installed, a wrong object / opset / flag / device got the ImportError first.
    import pyrnn.onnx_export as ox

    def missing():
        raise ImportError("ONNX export needs the 'onnx' package (simulated)")
    monkeypatch.setattr(ox, "_onnx", missing)
    layer = pyrnn.LSTM(2, 3)
    for call, exc, match in [
            (lambda: pyrnn.export_onnx(object()), TypeError, "takes a pyrnn RNN/LSTM/GRU layer"),
            (lambda: pyrnn.export_onnx(layer, opset=12), ValueError, "opset"),
            (lambda: pyrnn.export_onnx(layer, seq_len=0), ValueError, "seq_len"),
            (lambda: pyrnn.export_onnx(layer, lengths="no"), TypeError, "lengths must be"),
            (lambda: pyrnn.export_onnx(layer, path=3.5), TypeError, "path must be"),
            (lambda: pyrnn.export_onnx(layer), ImportError, "simulated")]:
        with pytest.raises(exc, match=match):
            call()


def test_cuda_extra_provides_the_cublas_major_the_extension_links(repo_root):
    # `pip install pyrnn[cuda]` must bring the cuBLAS whose soname pyrnn._cuda needs: a wheel
    # of another major would install and leave the backend unloadable.
    import importlib.util
    import re
    import shutil
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    extras = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (req,) = extras["cuda"]
    m = re.fullmatch(r"nvidia-cublas>=(\d+),<(\d+)", req)
    assert m and int(m[2]) == int(m[1]) + 1, req
    spec = importlib.util.find_spec("pyrnn._cuda")
    if spec is None or shutil.which("readelf") is None:
        pytest.skip("pyrnn._cuda is not built, or readelf is missing")
    dyn = subprocess.run(["readelf", "-d", spec.origin], capture_output=True, text=True).stdout
    needed = re.findall(r"\[libcublas\.so\.(\d+)\]", dyn)
    if not needed:
        pytest.skip("the host emulation build links no cuBLAS")
    assert needed == [m[1]], (needed, req)
