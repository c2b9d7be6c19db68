"""C++ side: the ctest suite (standalone cpp/ build and the top-level build with the CUDA
backend when it is configured), and an out-of-tree consumer using find_package(pyrnn)."""
import os
import shutil
import subprocess

import pytest

import pyrnn

cmake = shutil.which("cmake")
pytestmark = pytest.mark.skipif(cmake is None, reason="cmake is not installed")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def _generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _build_and_ctest(src, build, extra=()):
    _run([cmake, "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *_generator(),
          *extra])
    _run([cmake, "--build", str(build), "--parallel", "2"])
    return _run(["ctest", "--test-dir", str(build), "--output-on-failure"])


def test_cpp_core_standalone_ctest(repo_root, tmp_path):
    # cpp/ builds with plain CMake and no Python, and its ctest suite passes.
    res = _build_and_ctest(repo_root / "cpp", tmp_path / "build")
    assert "100% tests passed" in res.stdout


def test_cuda_backend_ctest(repo_root, tmp_path):
    # Compiles and links the CUDA backend (CI provides cuBLAS via PYRNN_CUBLAS_ROOT); its tests
    # skip themselves without a device.
    toolkit_cublas = os.path.isfile("/usr/local/cuda/include/cublas_v2.h")
    if not shutil.which("nvcc") or not (os.environ.get("PYRNN_CUBLAS_ROOT") or toolkit_cublas):
        pytest.skip("needs nvcc and cuBLAS (set PYRNN_CUBLAS_ROOT to the nvidia-cublas wheel's "
                    "nvidia/cu13 folder)")
    res = _build_and_ctest(repo_root, tmp_path / "build",
                           ["-DPYRNN_BUILD_TESTS=ON", "-DPYRNN_WITH_CUDA=ON",
                            "-DCMAKE_CUDA_ARCHITECTURES=90"])
    assert "100% tests passed" in res.stdout


def test_find_package_consumer(repo_root, tmp_path):
    build = tmp_path / "build"
    _run([cmake, "-S", str(repo_root / "tests" / "cmake_consumer"), "-B", str(build),
          f"-Dpyrnn_DIR={pyrnn.get_cmake_dir()}", *_generator()])
    _run([cmake, "--build", str(build)])
    exe = build / "consumer"
    res = _run([str(exe)])
    assert f"pyrnn {pyrnn.__version__}" in res.stdout


def test_add_subdirectory_of_the_core_from_another_project(repo_root, tmp_path):
    # Vendoring cpp/ with add_subdirectory failed to configure (its install folders were set
    # only in pyrnn's own builds), and its package version file took the including project's
    # version (helper-198).
    src = tmp_path / "outer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\n"
        "project(outer VERSION 9.9.9 LANGUAGES CXX)\n"
        f'add_subdirectory("{(repo_root / "cpp").as_posix()}" pyrnn)\n'
        f'add_executable(consumer "{(repo_root / "tests" / "cmake_consumer" / "main.cpp").as_posix()}")\n'
        "target_link_libraries(consumer PRIVATE pyrnn::pyrnn)\n")
    _run([cmake, "-S", str(src), "-B", str(tmp_path / "build"), *_generator()])
    version = (tmp_path / "build" / "pyrnn" / "pyrnnConfigVersion.cmake").read_text()
    assert f'set(PACKAGE_VERSION "{pyrnn.__version__}")' in version


def test_find_package_of_a_missing_cuda_component_says_why(tmp_path):
    # Only "pyrnn_FOUND set to FALSE" before (helper-198): the package, copied without its
    # CUDA targets, as a CPU-only build installs it.
    import pathlib
    package = pathlib.Path(pyrnn.__file__).parent
    cmake_dir = pathlib.Path(pyrnn.get_cmake_dir()).relative_to(package)
    copy = tmp_path / "pyrnn"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("pyrnnCudaTargets*.cmake"))
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(c LANGUAGES CXX)\n"
        "find_package(pyrnn CONFIG REQUIRED COMPONENTS cuda)\n")
    res = subprocess.run([cmake, "-S", str(src), "-B", str(tmp_path / "build"),
                          f"-Dpyrnn_DIR={copy / cmake_dir}", *_generator()],
                         capture_output=True, text=True)
    text = " ".join((res.stdout + res.stderr).split())  # (CMake wraps its messages)
    assert res.returncode != 0
    assert "pyrnn's cuda component is not available: this pyrnn package was built without " \
           "the CUDA backend" in text, text


@pytest.mark.parametrize("compiler", ["g++", "clang++"])
def test_public_headers_compile_cleanly(repo_root, tmp_path, compiler):
    # Each public header alone, in a user's strict build: -Wshadow caught a local in
    # check_allocation, clang's -Wextra an unused parameter of the cell rows (gcc is silent on
    # templates never instantiated).
    exe = shutil.which(compiler) or (
        "/usr/lib/llvm-14/bin/clang++" if compiler == "clang++" and
        os.path.exists("/usr/lib/llvm-14/bin/clang++") else None)
    if exe is None:
        pytest.skip(f"{compiler} is not installed")
    include = repo_root / "cpp" / "include"
    headers = sorted(str(p.relative_to(include)) for p in include.rglob("*.h"))
    assert "pyrnn/pyrnn.h" in headers and "pyrnn/kernels/cells.h" in headers
    for std in ("c++17", "c++20"):
        for h in headers:
            src = tmp_path / "one.cpp"
            src.write_text(f"#include <{h}>\nint main() {{ return 0; }}\n")
            _run([exe, f"-std={std}", "-Wall", "-Wextra", "-Wshadow", "-Wpedantic", "-Werror",
                  "-fsyntax-only", f"-I{include}", str(src)])
    # No POSIX names come along (aligned.h included <unistd.h>: a user's `read` clashed).
    src = tmp_path / "posix.cpp"
    src.write_text("#include <pyrnn/pyrnn.h>\nint read = 0, access = 1, close = 2;\n"
                   "int main() { return read + access + close - 3; }\n")
    _run([exe, "-std=c++17", "-Wall", "-Werror", "-fsyntax-only", f"-I{include}", str(src)])
