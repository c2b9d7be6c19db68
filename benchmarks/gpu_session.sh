#!/usr/bin/env bash
# One call on a lent GPU (H100 / H200, sm_90; no network): build, check, sanitize, benchmark.
#
#   bash benchmarks/gpu_session.sh          # from the repository root; results in $OUT
#
# Stages, in priority order, each under `timeout` and all inside one budget (PYRNN_GPU_BUDGET,
# default 420 s, so the whole call stays under 8 minutes with the machine's start-up):
#   env       nvidia-smi (read only: clocks and state are never set), versions
#   build     two builds at once from the image's own packages (pip --no-build-isolation
#             --no-deps --no-index): the CUDA ctest targets (cmake, -DCMAKE_CUDA_ARCHITECTURES=90)
#             and the Python package (unstripped: sanitizer backtraces name pyrnn's functions);
#             vendored cython-cmake modules (benchmarks/gpu_cmake) stand in when the image lacks
#             the cython-cmake package
# ctest, pytest and sanitize run side by side (one GPU, 16 cores); bench runs alone after them.
#   ctest     every CUDA C++ test (pyrnn_cuda_*tests) on the device (every step algorithm,
#             graphs, streams, TF32, ...) and the host-emulation tests
#   bench     benchmarks/bench_cuda.py: pyrnn vs PyTorch/cuDNN, variants default, nographs,
#             fused, persistent; float32 and TF32 rows
#   pytest    every CUDA Python test file (tests/test_cuda_*.py) and tests/test_bench_cuda.py
#   sanitize  compute-sanitizer memcheck, racecheck, initcheck and synccheck (side by side) over
#             every cell and step algorithm, time-major and batch_first; leaks grouped by origin
#   kernels   cuobjdump resource usage (registers, shared memory, spills) of the CUDA kernels
# $OUT receives exactly these 8 files (the device tool returns at most 8): session.txt (stage
# results, environment), build.log, ctest.log, bench.log, bench_cuda.json, pytest.log,
# sanitize.log, kernels.txt. Without $OUT they go to benchmarks/results/gpu_session/.
# Exit status: 0 if every stage that ran passed, else 1 (the files say which).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benchmarks/results/gpu_session}
mkdir -p "$OUT"
export OUT
WORK=${PYRNN_GPU_WORK:-/tmp/pyrnn_gpu_session}
mkdir -p "$WORK"
export WORK
BUDGET=${PYRNN_GPU_BUDGET:-420}
START=$SECONDS
PY=${PYTHON:-python3}
JOBS=$(nproc 2>/dev/null || echo 8)
HALF=$(( JOBS > 2 ? JOBS / 2 : 1 ))
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SESSION=$OUT/session.txt
[ "${1:-}" = "--stage" ] || : > "$SESSION"
failed=0

say() { echo "[$((SECONDS - START))s] $*" | tee -a "$SESSION"; }

# ---- the stages (each also runs alone: bash benchmarks/gpu_session.sh --stage NAME) ------------
# The nvidia-cublas wheel's root (the folder with include/cublas_v2.h: nvidia/cu13, not the
# other nvidia/cu* wheels such as cusparselt), else the CUDA toolkit's cuBLAS.
CUBLAS_ROOT=$("$PY" -c "import glob, nvidia, os; r = [d for d in sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], 'cu*'))) if os.path.exists(os.path.join(d, 'include', 'cublas_v2.h'))]; print(r[-1] if r else '')" 2>/dev/null)
export PYRNN_CUBLAS_ROOT=$CUBLAS_ROOT
# The image has scikit-build-core and Cython but maybe not cython-cmake (FindCython/UseCython):
# then a shim package over the vendored modules (benchmarks/gpu_cmake) registers them through
# the same `cmake.module` entry point scikit-build-core reads.
CYTHON_SHIM=""
if ! "$PY" -c "import cython_cmake" 2>/dev/null; then
  CYTHON_SHIM=$WORK/cython_cmake_shim
  mkdir -p "$CYTHON_SHIM/cython_cmake/cmake" "$CYTHON_SHIM/cython_cmake-0.0.0+vendored.dist-info"
  cp "$ROOT"/benchmarks/gpu_cmake/*.cmake "$CYTHON_SHIM/cython_cmake/cmake/"
  : > "$CYTHON_SHIM/cython_cmake/__init__.py"
  : > "$CYTHON_SHIM/cython_cmake/cmake/__init__.py"
  printf 'Metadata-Version: 2.1\nName: cython-cmake\nVersion: 0.0.0+vendored\n' \
    > "$CYTHON_SHIM/cython_cmake-0.0.0+vendored.dist-info/METADATA"
  printf '[cmake.module]\ncython_cmake = cython_cmake.cmake\n' \
    > "$CYTHON_SHIM/cython_cmake-0.0.0+vendored.dist-info/entry_points.txt"
  export PYTHONPATH=$CYTHON_SHIM${PYTHONPATH:+:$PYTHONPATH}
fi

do_env() {
  echo "== pyrnn GPU session $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "== nvidia-smi (read only)"
  nvidia-smi 2>&1 | head -30
  nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,temperature.gpu,power.draw --format=csv 2>&1
  echo "== tools"
  command -v nvcc && nvcc --version | tail -2
  command -v compute-sanitizer cuobjdump cmake ninja
  echo "cuBLAS root: ${CUBLAS_ROOT:-(CUDA toolkit)}; cython-cmake: ${CYTHON_SHIM:-(package)}"
  "$PY" - <<'PYV'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for m in ("torch", "numpy", "scikit_build_core", "Cython", "cython_cmake", "pytest", "xdist",
          "pynvml", "nvidia"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "present"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__)
try:
    import torch
    print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no device")
except Exception as e:
    print("torch check failed:", e)
PYV
}

do_build() {  # the ctest targets (cmake) and the Python package (pip), side by side
  (
    cmake -S "$ROOT" -B "$WORK/ct" -G Ninja -DPYRNN_BUILD_TESTS=ON -DPYRNN_WITH_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 > "$WORK/ct.log" 2>&1 || exit 1
    # Every CUDA test executable there is (pyrnn_cuda_*tests), not the CPU ones.
    targets=$(cmake --build "$WORK/ct" --target help 2>/dev/null |
              grep -oE '^pyrnn_cuda[a-z_]*tests' | sort -u | tr '\n' ' ')
    echo "CUDA test targets: $targets" >> "$WORK/ct.log"
    # shellcheck disable=SC2086
    cmake --build "$WORK/ct" -j "$HALF" --target pyrnn_cuda $targets >> "$WORK/ct.log" 2>&1
  ) &
  local ct=$!
  CMAKE_BUILD_PARALLEL_LEVEL=$HALF "$PY" -m pip install --no-build-isolation --no-deps \
    --no-index -v "$ROOT" -C "build-dir=$WORK/py" -C cmake.define.PYRNN_WITH_CUDA=ON \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 -C install.strip=false > "$WORK/pip.log" 2>&1
  local pip_rc=$?
  wait "$ct"
  local ct_rc=$?
  echo "== ctest targets (cmake): exit $ct_rc"
  tail -60 "$WORK/ct.log"
  echo "== pip install: exit $pip_rc"
  grep -iE "error|warning" "$WORK/pip.log" | grep -v "^WARNING: Location" | head -40
  tail -30 "$WORK/pip.log"
  return $(( ct_rc != 0 || pip_rc != 0 ))
}

do_ctest() {
  ctest --test-dir "$WORK/ct" -R pyrnn_cuda --output-on-failure -V
}

do_bench() {
  cd "$WORK" && "$PY" "$ROOT/benchmarks/bench_cuda.py" \
    --variants default,nographs,fused,persistent --precision both --repeats 30 --warmup 5 \
    --budget 2.5 --out "$OUT/bench_cuda.json"
}

do_pytest() {
  local xdist=()
  # A crashed worker is replaced (up to 100 times; xdist's default limit stopped the first run
  # at 48 %), so a segfault costs one test, not the rest of the run.
  "$PY" -c "import xdist" 2>/dev/null && xdist=(-n 6 --max-worker-restart 100)
  # A hung test is named (pytest-timeout, when the image has it) instead of eating the stage.
  "$PY" -c "import pytest_timeout" 2>/dev/null && xdist+=(--timeout 90)
  # Every CUDA test file there is (test_cuda_*.py), and the benchmark's.
  cd "$WORK" && "$PY" -m pytest -q -p no:cacheprovider -rs ${xdist[@]+"${xdist[@]}"} \
    "$ROOT"/tests/test_cuda_*.py "$ROOT/tests/test_bench_cuda.py"
}

do_sanitize() {  # memcheck, racecheck, initcheck, synccheck side by side; every cell and algorithm
  (cd "$WORK" && PYRNN_SANITIZE_TOOLS="${PYRNN_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}" PYTHON="$PY" \
    bash "$ROOT/benchmarks/cuda_sanitize.sh" "$WORK/sanitize")
  local rc=$?
  for f in "$WORK"/sanitize/*.log "$WORK"/sanitize/*.stdout; do
    [ -f "$f" ] || continue
    echo "== $f (last 40 lines)"
    tail -40 "$f"
  done
  return $rc
}

do_kernels() {  # registers, shared memory, spills; SASS instruction mix of the step kernels
  local lib=$WORK/ct/cuda/libpyrnn_cuda.a
  [ -f "$lib" ] || { echo "no $lib"; return 1; }
  cuobjdump --dump-resource-usage "$lib" 2>&1 | grep -E "Function|REG|STACK|SHARED|LOCAL" | head -80
  echo "== SASS instruction counts of the step kernels (count, kernel, opcode)"
  cuobjdump -sass "$lib" 2>/dev/null | awk '
    /Function : / { f = ($0 ~ /step_kernel/) ? $NF : ""; next }
    f != "" && /\/\*[0-9a-f]+\*\/ / {
      line = $0; sub(/^[^\/]*\/\*[0-9a-f]+\*\/[ \t]*/, "", line); sub(/^@!?P[0-9T] +/, "", line)
      split(line, w, /[ \t;]/); split(w[1], op, "."); if (op[1] ~ /^[A-Z]/) n[f " " op[1]]++
    }
    END { for (k in n) print n[k], k }' | sort -k2,2 -k1,1nr | head -150
}

if [ "${1:-}" = "--stage" ]; then  # one stage alone (what `stage` runs under timeout)
  "do_$2"
  exit $?
fi

# stage NAME LIMIT LOG: runs do_NAME under timeout min(LIMIT, what the budget has left), unless
# PYRNN_GPU_SKIP names it (a rerun of some stages: PYRNN_GPU_SKIP="bench kernels").
stage() {
  local name=$1 limit=$2 log=$3
  case " ${PYRNN_GPU_SKIP:-} " in
    *" $name "*)
      say "SKIP  $name: PYRNN_GPU_SKIP"
      echo "skipped: PYRNN_GPU_SKIP" >> "$log"
      return 99 ;;
  esac
  local left=$(( BUDGET - (SECONDS - START) ))
  local t=$(( limit < left ? limit : left ))
  if [ "$t" -lt 15 ]; then
    say "SKIP  $name: budget spent"
    echo "skipped: budget spent" >> "$log"
    return 99
  fi
  say "START $name (timeout ${t}s)"
  timeout -k 10 "$t" bash "$ROOT/benchmarks/gpu_session.sh" --stage "$name" >> "$log" 2>&1
  local rc=$?
  [ "$rc" -eq 124 ] && say "TIMEOUT $name after ${t}s"
  say "END   $name: exit $rc"
  [ "$rc" -ne 0 ] && failed=1
  return "$rc"
}

do_env >> "$SESSION" 2>&1
stage build 300 "$OUT/build.log"
ct_built=0
[ -x "$WORK/ct/cuda/pyrnn_cuda_tests" ] && ct_built=1
py_built=0
(cd "$WORK" && "$PY" -c "import pyrnn.cuda as c, sys; sys.exit(0 if c.is_available() else 1)") \
  >> "$SESSION" 2>&1 && py_built=1
say "ctest targets built: $ct_built; pyrnn installed with a usable GPU: $py_built"
# The correctness checks share the GPU (and 16 cores) at once; the benchmark then runs alone.
checks=()
if [ "$ct_built" = 1 ]; then checks+=("ctest 150"); else echo "not built" > "$OUT/ctest.log"; fi
if [ "$py_built" = 1 ]; then
  checks+=("pytest 200" "sanitize 200")
else
  for f in bench pytest sanitize; do echo "pyrnn not built / no GPU" > "$OUT/$f.log"; done
fi
pids=()
for c in ${checks[@]+"${checks[@]}"}; do
  set -- $c
  stage "$1" "$2" "$OUT/$1.log" &
  pids+=($!)
done
for p in ${pids[@]+"${pids[@]}"}; do
  wait "$p"
  rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 99 ] && failed=1
done
if [ "$py_built" = 1 ]; then stage bench 170 "$OUT/bench.log"; fi
if [ "$ct_built" = 1 ]; then stage kernels 30 "$OUT/kernels.txt"; else echo "not built" > "$OUT/kernels.txt"; fi

say "done in $((SECONDS - START))s; failed=$failed"
{
  echo "== summary"
  grep -E "END|SKIP|TIMEOUT" "$SESSION"
  grep -E "^variant " "$OUT/bench.log" 2>/dev/null
} > "$WORK/summary.tmp"
cat "$WORK/summary.tmp" >> "$SESSION"
exit $failed
