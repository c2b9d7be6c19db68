#!/usr/bin/env bash
# compute-sanitizer over a small forward + backward of every cell (float and double, lengths,
# bidirectional, 2 layers with dropout) through the CUDA backend, under every step algorithm
# (cuBLAS with CUDA graphs, the fused step kernel, the persistent kernel on 3 blocks with grid
# barriers; where pyrnn.cuda.configure exists): memcheck (out-of-bounds and misaligned accesses,
# leaks), racecheck (shared-memory hazards: the bias column sum, the step kernels' weight slices
# and tiles), initcheck (reads of uninitialised device memory) and synccheck.
# Needs a GPU, compute-sanitizer (CUDA toolkit) and pyrnn installed with PYRNN_WITH_CUDA=ON.
# Usage: benchmarks/cuda_sanitize.sh [log dir]   (default: a new folder under ${TMPDIR:-/tmp})
# PYRNN_SANITIZE_TOOLS="memcheck racecheck" picks tools (default: all four).
# Writes one log per tool and summary.txt. Exits non-zero if a tool did not finish (a crash,
# not its error exit 99) or sanitize_summary.py finds a report other than a leak in any log
# (leaks are listed, grouped: the per-device Context is kept until exit on purpose).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d "${TMPDIR:-/tmp}/pyrnn-sanitize.XXXXXX")}"
mkdir -p "$out"
san="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
if [ ! -x "$san" ]; then
  echo "compute-sanitizer not found" >&2
  exit 2
fi
py="${PYTHON:-python3}"
script="$out/workload.py"
cat > "$script" <<'PY'
import gc
import sys
import weakref

import numpy as np
import pyrnn
import pyrnn.cuda

assert pyrnn.cuda.is_available(), pyrnn.cuda.unavailable_reason()
_cuda = pyrnn.cuda.kernels()  # the loaded pyrnn._cuda module
rng = np.random.default_rng(0)


def describe(obj):
    """A short name for a referrer: frames by function and line, dicts by a few keys."""
    if type(obj).__name__ == "frame":
        return f"frame {obj.f_code.co_name} ({obj.f_code.co_filename}:{obj.f_lineno})"
    if isinstance(obj, dict):
        return f"dict keys {sorted(map(str, obj))[:8]}"
    if isinstance(obj, (list, tuple)):
        return f"{type(obj).__name__} of {len(obj)}"
    return type(obj).__module__ + "." + type(obj).__qualname__


def layer_report(tag, ref):
    """A layer that outlives its block (gc cannot free it): its raw refcount (getrefcount's
    argument and this frame's name not counted; 2**31 or more is a corrupted count, an
    immortal object to Python 3.12) and who holds it."""
    layer = ref()
    if layer is None:
        return
    refs = gc.get_referrers(layer)
    print(f"LAYER ALIVE after {tag}: {type(layer).__name__}, raw refcount "
          f"{sys.getrefcount(layer) - 2}, {len(refs)} gc referrers")
    for r in refs[:3]:
        print(f"    <- {describe(r)} <- {[describe(u) for u in gc.get_referrers(r)][:3]}")


def leak_report(tag, before, limit=4):
    """After gc: the DeviceArrays pyrnn allocated that something still holds, with who holds
    them (two levels of gc referrers and the refcount: a count above the referrers found is a
    reference that no Python container holds, i.e. one taken in C)."""
    gc.collect()
    now = _cuda._live_allocations()
    if now == before:
        return now
    print(f"LEAK after {tag}: live DeviceArray allocations {before} -> {now}")
    seen = [o for o in gc.get_objects() if type(o).__name__ == "DeviceArray"
            and type(o.owner).__name__ == "_Allocation"]
    layers = [o for o in gc.get_objects() if isinstance(o, (pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU))]
    print(f"  {len(seen)} owning DeviceArrays and {len(layers)} recurrent layers found by gc")
    for a in seen[:limit]:
        refs = [r for r in gc.get_referrers(a) if r is not seen]
        print(f"  DeviceArray {a.shape} {a.dtype}: raw refcount {sys.getrefcount(a) - 2}, "
              f"{len(refs)} gc referrers")
        for r in refs[:3]:
            up = [describe(u) for u in gc.get_referrers(r) if u is not refs][:3]
            print(f"    <- {describe(r)} <- {up}")
    del seen, layers
    return _cuda._live_allocations()


algos = [None]
if hasattr(pyrnn.cuda, "configure"):
    algos = [dict(algo="cublas", graphs=True), dict(algo="fused", persist_blocks=3),
             dict(algo="persistent", persist_blocks=3)]
live = leak_report("import", (0, 0))
for opts in algos:
    for dtype in ("float32", "float64"):
        for i, cell in enumerate(("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_after")):
            # batch_first on every other cell: the core's swaps of x, y, dy and dx
            kw = dict(num_layers=2, bidirectional=True, dropout=0.3, dtype=dtype, device="cuda",
                      seed=1, batch_first=bool(i % 2))
            if cell.startswith("rnn"):
                layer = pyrnn.RNN(3, 5, nonlinearity=cell[4:], **kw)
            elif cell == "lstm":
                layer = pyrnn.LSTM(3, 5, **kw)
            else:
                layer = pyrnn.GRU(3, 5, reset_after=cell == "gru_after", **kw)
            if opts:
                pyrnn.cuda.configure(layer, **opts)
            x = rng.standard_normal((4, 3, 3))
            for _ in range(2):  # the second pass replays the captured graphs
                out, _ = layer(x, lengths=[3, 2, 1, 3] if kw["batch_first"] else [4, 2, 1])
                layer.backward(np.ones_like(out))
            xd = pyrnn.cuda.to_device(x.astype(dtype))  # device in, device out
            out_d, state_d = layer(xd)
            layer.backward(out_d.copy())
            layer.eval()
            layer(x)
            info = pyrnn.cuda.layer_options(layer) if opts else {}
            ran = (f"{info['last_forward_algo']}/{info['last_backward_algo']} graphs "
                   f"{info['last_forward_graphs']}/{info['last_backward_graphs']} "
                   f"({info['graphs_disabled_reason']})" if opts else "default")
            print(cell, dtype, "batch_first" if kw["batch_first"] else "time-major", ran, "ok")
            alive = weakref.ref(layer)
            # Everything this block made is released here: a live count that grows names the
            # block (cell, dtype, algorithm) whose objects something keeps.
            del layer, x, out, xd, out_d, state_d, _
            live = leak_report(f"{cell} {dtype} {opts}", live)
            layer_report(f"{cell} {dtype} {opts}", alive)
pyrnn.cuda.synchronize()
# So what memcheck's leak check still reports at exit is memory kept on purpose (the
# per-device Context: stream, cuBLAS, workspaces).
gc.collect()
print("DeviceArray allocations still live after cleanup (count, bytes):", _cuda._live_allocations())
PY
status=0
: > "$out/summary.txt"
one_tool() {  # one tool over the workload; its line of the summary
  local tool=$1 extra="" log="$out/$1.log"
  [ "$tool" = memcheck ] && extra="--leak-check full"
  "$san" --tool "$tool" $extra --print-limit 100000 --error-exitcode 99 --log-file "$log" "$py" "$script" > "$out/$tool.stdout" 2>&1
  local rc=$?
  local totals
  totals="$(grep -Eo '(ERROR|RACECHECK) SUMMARY: [0-9]+ [a-z]+' "$log" | paste -sd ',' -)"
  echo "$tool: exit $rc, ${totals:-no summary line}" | tee -a "$out/summary.txt"
  # 99: the tool reported something (leaks included); sanitize_summary.py says what.
  [ "$rc" -eq 0 ] || [ "$rc" -eq 99 ]
}
# The tools run side by side (each is a separate process on the GPU; most of their time is host
# work), so all of them fit the time a lent GPU has.
pids=()
# The workload without a sanitizer too: whether a live count after a block needs one.
"$py" "$script" > "$out/plain.stdout" 2>&1 &
plain=$!
for tool in ${PYRNN_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}; do
  one_tool "$tool" &
  pids+=($!)
done
for p in "${pids[@]}"; do
  wait "$p" || status=1
done
wait "$plain"
echo "no sanitizer: exit $?, $(tail -1 "$out/plain.stdout")" | tee -a "$out/summary.txt"
# The workload's own leak reports (the first blocks that kept DeviceArrays, and who holds them).
for f in "$out"/*.stdout; do
  grep -Eq "^(LEAK|LAYER ALIVE)" "$f" || continue
  echo "== $(basename "$f"): leak reports (first 40 lines)"
  grep -EA10 "^(LEAK|LAYER ALIVE)" "$f" | head -40
done | tee -a "$out/summary.txt"
# What the errors are: kinds, and leaks grouped by the pyrnn frames that allocated them; its
# status is the verdict (pipefail: not tee's).
set -o pipefail
"$py" "$here/sanitize_summary.py" "$out" | tee -a "$out/summary.txt" || status=1
echo "logs in $out" | tee -a "$out/summary.txt"
exit $status
