#!/usr/bin/env bash
# Reliability checks that need their own builds or tools (README "Reliability"; .ci/run runs
# each as a step). Run from anywhere, with the project's virtual environment active (pip
# install ".[test]" first; cmake, ninja, Cython and scikit-build-core come from there).
#
#   bash tests/reliability.sh asan-cpp          cpp/ standalone with -DPYRNN_SANITIZE=ON
#                                               (AddressSanitizer + UBSan), its ctest suite
#   bash tests/reliability.sh asan-python       the extension built with PYRNN_SANITIZE=ON,
#                                               then tests/sanitize/python_smoke.py and the
#                                               reliability test files under LD_PRELOAD=libasan
#   bash tests/reliability.sh valgrind          memcheck (leaks included) on the C++ tests
#   bash tests/reliability.sh tsan-cpp          cpp/ standalone with ThreadSanitizer, its
#                                               tests at 2 and 3 threads over LLVM's OpenMP
#                                               runtime and its Archer tool (libomp-dev)
#   bash tests/reliability.sh fuzz [SECONDS]    each atheris target for SECONDS (default 60;
#                                               PYRNN_FUZZ_SEED, default 1, 0 = random)
#   bash tests/reliability.sh cuda-emulation    pyrnn._cuda built over the host emulation of
#                                               CUDA (no GPU) with ASan + UBSan, then every
#                                               test file with device="cuda" paths
#
# Builds go to $PYRNN_RELIABILITY_BUILD (default build/reliability). Any report, leak or
# fuzz finding makes the command exit non-zero.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PYRNN_RELIABILITY_BUILD:-$ROOT/build/reliability}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
PY=${PYTHON:-python}

asan_env() {
  # halt_on_error: the first report aborts. Leak checking is off for the Python process
  # (CPython itself keeps memory until exit); the C++ ctest run has it on.
  export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # libstdc++ too: ASan's __cxa_throw interceptor must find it at start-up (python does not
  # link it; the extension brings it later).
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
  export LD_PRELOAD
}

# install_site SITE BUILD_DIR [-C option...]: the package, built with the given options, into
# SITE (--target: nothing else is touched); `PYTHONPATH=SITE` then imports it. Every option is
# explicit: CI's SKBUILD_CMAKE_DEFINE (PYRNN_WITH_CUDA=ON for its main build) is dropped. The
# build requirements come from an isolated build environment unless this one has them.
install_site() {
  local site=$1 build=$2
  shift 2
  rm -rf "$site"
  local isolation=()
  "$PY" -c "import scikit_build_core, Cython, cython_cmake" 2> /dev/null \
    && isolation=(--no-build-isolation)
  env -u SKBUILD_CMAKE_DEFINE "$PY" -m pip install "${isolation[@]}" --no-deps -q \
    --target "$site" "$ROOT" -C build-dir="$build" -C cmake.build-type=RelWithDebInfo "$@"
}

case "${1:-}" in
  asan-cpp)
    cmake -S "$ROOT/cpp" -B "$BUILD/asan-cpp" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPYRNN_SANITIZE=ON -DPYRNN_BUILD_TESTS=ON > /dev/null
    cmake --build "$BUILD/asan-cpp"
    # The ctest environment (cpp/tests/CMakeLists.txt) turns on halt_on_error and leaks.
    ctest --test-dir "$BUILD/asan-cpp" --output-on-failure
    ;;
  asan-python)
    # CPU only (nvcc's objects are not sanitizer-instrumented).
    install_site "$BUILD/asan-site" "$BUILD/asan-py" \
      -C cmake.define.PYRNN_SANITIZE=ON -C cmake.define.PYRNN_WITH_CUDA=OFF
    asan_env
    export PYTHONPATH="$BUILD/asan-site"
    (cd "$BUILD" && PYRNN_MEMORY_LIMIT=2G "$PY" "$ROOT/tests/sanitize/python_smoke.py")
    # From $BUILD, not the repository root: `python -m` puts the working folder first on
    # sys.path, and the source tree's pyrnn/ has no compiled modules.
    (cd "$BUILD" && "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_input_table.py" \
      "$ROOT/tests/test_properties.py" "$ROOT/tests/test_threads.py" \
      "$ROOT/tests/test_faults.py" "$ROOT/tests/test_fuzz_corpus.py" \
      "$ROOT/tests/test_layer_errors.py" "$ROOT/tests/test_train_layers.py")
    ;;
  valgrind)
    if ! command -v valgrind > /dev/null; then
      echo "valgrind is not installed (Debian: apt-get install valgrind)" >&2
      exit 1
    fi
    cmake -S "$ROOT/cpp" -B "$BUILD/valgrind" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPYRNN_BUILD_TESTS=ON > /dev/null
    cmake --build "$BUILD/valgrind"
    # Definite and indirect leaks are errors; "possibly lost" are the OpenMP runtime's
    # thread stacks, kept on purpose until exit. Valgrind reports no AVX-512, so the tests
    # run the scalar and AVX2 kernels there.
    valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --show-leak-kinds=definite,indirect "$BUILD/valgrind/tests/pyrnn_cpp_tests"
    ;;
  tsan-cpp)
    # ThreadSanitizer sees no ordering in gcc's libgomp (its barriers and joins are futexes and
    # uninstrumented atomics: every region's join is a report). LLVM's runtime exports the same
    # GOMP_* entry points, so it stands in for libgomp at run time, and its Archer tool tells
    # TSan about the barriers and joins. Then any report is a race in pyrnn's code (the step
    # barriers of step_sync.h, the thread-private scratch, the runtime's shared state).
    archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2> /dev/null | sort -V | tail -1 || true)
    if [ -z "$archer" ]; then
      echo "LLVM's OpenMP runtime with Archer is not installed (Debian: apt-get install libomp-dev)" >&2
      exit 1
    fi
    libomp="$(dirname "$archer")/libomp.so.5"
    [ -e "$libomp" ] || { echo "$libomp is missing (Debian: apt-get install libomp-dev)" >&2; exit 1; }
    cmake -S "$ROOT/cpp" -B "$BUILD/tsan-cpp" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPYRNN_BUILD_TESTS=ON -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" > /dev/null
    cmake --build "$BUILD/tsan-cpp"
    mkdir -p "$BUILD/tsan-cpp/omp"
    ln -sf "$libomp" "$BUILD/tsan-cpp/omp/libgomp.so.1"
    for threads in 2 3; do
      echo "== ThreadSanitizer, $threads threads"
      # exitcode: a report fails the run even if the test itself passes. verbose=1: Archer
      # says it is attached (checked below), so a run without it cannot pass as clean.
      (cd "$BUILD/tsan-cpp" && LD_LIBRARY_PATH="$BUILD/tsan-cpp/omp" OMP_TOOL_LIBRARIES="$archer" \
        ARCHER_OPTIONS=verbose=1 OMP_NUM_THREADS=$threads \
        TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1 exitcode=66" \
        ./tests/pyrnn_cpp_tests > log-$threads 2>&1) || { tail -60 "$BUILD/tsan-cpp/log-$threads"; exit 1; }
      grep -q "Archer detected OpenMP application with TSan" "$BUILD/tsan-cpp/log-$threads" \
        || { echo "Archer was not attached: no OpenMP-aware run" >&2; exit 1; }
      tail -1 "$BUILD/tsan-cpp/log-$threads"
    done
    ;;
  fuzz)
    seconds=${2:-60}
    # A fixed seed by default, so CI runs are reproducible (the corpus and the code still
    # steer the search); PYRNN_FUZZ_SEED=0 asks libFuzzer for a random one.
    seed=${PYRNN_FUZZ_SEED:-1}
    if ! "$PY" -c "import atheris" 2> /dev/null; then
      echo "atheris is not installed (pip install atheris)" >&2
      exit 1
    fi
    for target in load layer; do
      work="$BUILD/fuzz-$target"
      rm -rf "$work" && mkdir -p "$work/corpus"
      echo "== fuzz $target for ${seconds}s"
      # New inputs go to the scratch corpus; the committed seeds are read only. A finding
      # (an exception other than the allowed ones, a crash, a timeout, an OOM) stops the
      # fuzzer with a non-zero status and leaves the input in $work/crash-* (or timeout-*,
      # oom-*).
      rc=0
      # TMPDIR: libFuzzer ends a timed run with exit(), past Python's atexit clean-up.
      (cd "$work" && TMPDIR="$work" PYRNN_MEMORY_LIMIT=1G OMP_NUM_THREADS=1 "$PY" \
        "$ROOT/tests/fuzz/fuzz_$target.py" -max_total_time="$seconds" -timeout=20 -seed="$seed" \
        -rss_limit_mb=4096 -artifact_prefix="$work/" -print_final_stats=1 \
        "$work/corpus" "$ROOT/tests/fuzz/corpus/$target" > "$work/log" 2>&1) || rc=$?
      grep -v "^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)" "$work/log" | tail -20
      if [ "$rc" -ne 0 ] || ! grep -q "^Done [0-9]* runs" "$work/log"; then
        echo "fuzz $target: FINDING or failure (status $rc; log and inputs in $work)" >&2
        exit 1
      fi
    done
    ;;
  cuda-emulation)
    # PYRNN_CUDA_HOST_EMULATION links pyrnn._cuda to cuda/tests/emu instead of cudart and
    # cuBLAS: its one device, "host emulation", runs the real Cython wrappers and the real
    # recurrent.cu / layers.cu / ... orchestration (compiled as C++) with the kernels' bodies
    # on host threads. So the Python GPU tests (DeviceArray, DLPack, device="cuda" layers and
    # training, graphs, the demo's --device cuda) run without a GPU, here under ASan + UBSan:
    # "device" memory is host memory, so an access outside a device buffer is a report (what
    # compute-sanitizer's memcheck does on a GPU). Kernel launches, cuBLAS's argument mapping
    # and real asynchrony are left to a device (benchmarks/gpu_session.sh).
    install_site "$BUILD/emu-site" "$BUILD/emu-py" -C cmake.define.PYRNN_SANITIZE=ON \
      -C cmake.define.PYRNN_WITH_CUDA=ON -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 \
      -C cmake.define.PYRNN_CUDA_HOST_EMULATION=ON
    asan_env
    export PYTHONPATH="$BUILD/emu-site"
    (cd "$BUILD" && "$PY" -c "import pyrnn, sys; d = pyrnn.info()['cuda_devices']; print('CUDA devices:', d); sys.exit(d != ['host emulation'])")
    # Every test file with a device="cuda" path (test_cpp_examples.py builds the installed C++
    # library, the real CUDA one: the main run has it).
    (cd "$BUILD" && PYRNN_MEMORY_LIMIT=4G "$PY" -m pytest -q -p no:cacheprovider \
      "$ROOT"/tests/test_cuda_*.py "$ROOT/tests/test_bench_cuda.py" \
      "$ROOT/tests/test_demo_cli.py" "$ROOT/tests/test_input_table.py" \
      "$ROOT/tests/test_package.py" "$ROOT/tests/test_recurrent_copy.py" \
      "$ROOT/tests/test_param_writes.py")
    ;;
  *)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
