"""Runs snippets of Python in child processes, in batches, so that a crash (a segfault, an
abort, an OOM kill) of one snippet is reported as the failure of THAT snippet, and the rest
still run.

Each case is (id, source). A child executes the sources in order, each in a fresh namespace
built by a prelude, and writes one JSON line per case to a results file: the exception type
(or null), its message, and the seconds taken. Before running a case it writes a "start"
line, so when the child dies, the case it was running is known; a new child then continues
after it. Used by test_input_table.py (and test_threads.py for the layer-sharing checks).
"""
import json
import os
import resource
import subprocess
import sys
import tempfile

CHILD = r'''
import json, sys, time, traceback
cases_path, out_path, prelude_path = sys.argv[1:4]
with open(cases_path) as f:
    cases = json.load(f)
with open(prelude_path) as f:
    prelude = compile(f.read(), "<prelude>", "exec")
base = {"__name__": "__case__"}
exec(prelude, base)
out = open(out_path, "a", buffering=1)
for case_id, src in cases:
    out.write(json.dumps({"start": case_id}) + "\n")
    out.flush()
    ns = dict(base)
    t0 = time.perf_counter()
    try:
        exec(compile(src, f"<case {case_id}>", "exec"), ns)
        exc, msg = None, ""
    except BaseException as e:  # KeyboardInterrupt, SystemExit, MemoryError too
        exc, msg = type(e).__name__, str(e)
        if isinstance(e, AssertionError) or exc in ("NameError", "SyntaxError"):
            msg += "\n" + traceback.format_exc(limit=3)
    out.write(json.dumps({"done": case_id, "exc": exc, "msg": msg[:2000],
                          "seconds": time.perf_counter() - t0}) + "\n")
    out.flush()
'''


def _limit_memory(max_bytes):
    def apply():
        if max_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    return apply


def run_cases(cases, prelude, *, env=None, address_space=None, timeout=600, cwd=None):
    """{case id: {"exc", "msg", "seconds"} or {"crash": description}} for every case.

    address_space: RLIMIT_AS for the children (a safety net: a regression that tries to
    allocate absurd memory fails there instead of pushing the machine into the OOM killer).
    """
    if "libasan" in (env or os.environ).get("LD_PRELOAD", ""):
        address_space = None  # AddressSanitizer reserves terabytes of shadow address space
    results = {}
    pending = list(cases)
    with tempfile.TemporaryDirectory() as tmp:
        prelude_path = os.path.join(tmp, "prelude.py")
        with open(prelude_path, "w") as f:
            f.write(prelude)
        child_path = os.path.join(tmp, "child.py")
        with open(child_path, "w") as f:
            f.write(CHILD)
        run = 0
        while pending:
            run += 1
            cases_path = os.path.join(tmp, f"cases{run}.json")
            out_path = os.path.join(tmp, f"out{run}.jsonl")
            with open(cases_path, "w") as f:
                json.dump(pending, f)
            open(out_path, "w").close()
            child_env = dict(os.environ if env is None else env)
            try:
                proc = subprocess.run([sys.executable, child_path, cases_path, out_path,
                                       prelude_path], capture_output=True, text=True,
                                      timeout=timeout, env=child_env, cwd=cwd or tmp,
                                      preexec_fn=_limit_memory(address_space))
                rc, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as e:
                rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(
                    e.stderr, bytes) else (e.stderr or "")
            started = None
            with open(out_path) as f:
                for line in f:
                    rec = json.loads(line)
                    if "start" in rec:
                        started = rec["start"]
                    else:
                        results[rec.pop("done")] = rec
                        started = None
            done_ids = set(results)
            if started is not None:
                results[started] = {"crash": f"the child process died running this case "
                                             f"(exit status {rc}); stderr tail:\n{err[-3000:]}"}
                done_ids.add(started)
            elif rc != 0 and any(c[0] not in done_ids for c in pending):
                # Died before starting any case (prelude failure): report on all remaining.
                for cid, _ in pending:
                    results.setdefault(cid, {"crash": f"the child failed before this case "
                                                      f"(exit status {rc}):\n{err[-3000:]}"})
                break
            pending = [c for c in pending if c[0] not in results]
    return results
