"""benchmarks/sanitize_summary.py: how cuda_sanitize.sh reads compute-sanitizer's logs (leaks
grouped by pyrnn's own frames), on logs written here in the tool's two frame formats. Runs
without a GPU; the logs' shape follows the tool's output (a leak line, then its host backtrace)."""
from _scripts import load_script

NEW = """========= COMPUTE-SANITIZER
========= Leaked 1024 bytes at 0x7f0000000000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: [0x2e3f5b] in /lib/x86_64-linux-gnu/libcuda.so.1
=========     Host Frame: cudaMalloc [0x4f1a2] in /opt/site-packages/nvidia/cu13/lib/libcudart.so.13
=========     Host Frame: pyrnn::cuda::DeviceBuffer::allocate(unsigned long) [0x1a2b3]
=========                in /opt/site-packages/pyrnn/_cuda.cpython-311-x86_64-linux-gnu.so
=========     Host Frame: __pyx_pw_5pyrnn_5_cuda_11DeviceArray_5empty [0x1c2d3] in /opt/site-packages/pyrnn/_cuda.cpython-311-x86_64-linux-gnu.so
=========     Host Frame: _PyEval_EvalFrameDefault [0x1234] in /usr/lib/libpython3.11.so.1.0
=========
========= Leaked 2048 bytes at 0x7f0000100000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: cudaMalloc [0x4f1a2] in /opt/nvidia/cu13/lib/libcudart.so.13
=========     Host Frame: pyrnn::cuda::DeviceBuffer::allocate(unsigned long) [0x1a2b3] in /opt/pyrnn/_cuda.so
=========     Host Frame: __pyx_pw_5pyrnn_5_cuda_11DeviceArray_5empty [0x1c2d3] in /opt/pyrnn/_cuda.so
=========
========= Leaked 33554432 bytes at 0x7f0002000000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: cudaMalloc [0x4f1a2] in /opt/nvidia/cu13/lib/libcudart.so.13
=========     Host Frame: pyrnn::cuda::Context::Context(int) [0x5555] in /opt/pyrnn/_cuda.so
=========
========= Leaked 64 bytes at 0x7f0003000000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: [0x2e3f5b] in /lib/x86_64-linux-gnu/libcuda.so.1
=========     Host Frame: [0x77aa] in /opt/pyrnn/_cuda.so
=========
========= Leaked 128 bytes at 0x7f0004000000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: [0x2e3f5b]
=========                in /lib/x86_64-linux-gnu/libcuda.so.1
=========     Host Frame: [0x77aa]
=========                in /opt/pyrnn/_cuda.so
=========
========= Leaked 256 bytes at 0x7f0005000000
=========     Saved host backtrace up to driver entry point at allocation time
=========     Host Frame: [0x2e3f5b]
=========                in /lib/x86_64-linux-gnu/libcuda.so.1
=========     Host Frame: c10::cuda::CUDACachingAllocator::malloc [0x99]
=========                in /work/pyrnn/.venv/lib/python3.11/site-packages/torch/lib/libc10_cuda.so
=========
========= LEAK SUMMARY: 33557568 bytes leaked in 4 allocations
========= ERROR SUMMARY: 4 errors
"""

OLD = """========= CUDA-MEMCHECK
========= Invalid __global__ write of size 4 bytes
=========     at 0x70 in step_kernel
=========     Host Frame:/usr/lib/x86_64-linux-gnu/libcuda.so.1 (cuLaunchKernel + 0x34e) [0x2c5e8e]
=========
========= Leaked 512 bytes at 0x7f0000000000
=========     Saved host backtrace up to driver entry point at cudaMalloc time
=========     Host Frame:/usr/lib/x86_64-linux-gnu/libcuda.so.1 (cuMemAlloc_v2 + 0x1b9) [0x2e1f09]
=========     Host Frame:/opt/pyrnn/_cuda.so (_ZN5pyrnn4cuda12DeviceBufferC1Em + 0x31) [0x4321]
=========     Host Frame:/opt/pyrnn/_cuda.so (__pyx_pw_5pyrnn_5_cuda_9to_device + 0x88) [0x9876]
=========
========= ERROR SUMMARY: 2 errors
"""


def test_leaks_grouped_by_pyrnn_frames_in_the_newer_format():
    mod = load_script("sanitize_summary")
    kinds, leaks, totals = mod.parse(NEW)
    assert kinds == {"Leaked": 6} and totals == {"errors": 4}
    assert mod.verdict(kinds, totals) == []  # leaks alone pass (the Context is kept on purpose)
    empty = ("pyrnn::cuda::DeviceBuffer::allocate(unsigned long) < "
             "__pyx_pw_5pyrnn_5_cuda_11DeviceArray_5empty")
    assert leaks[empty] == [2, 3072]  # the frame split over two lines groups with the other
    assert leaks["pyrnn::cuda::Context::Context(int)"] == [1, 33554432]
    # A stripped build: its library, whether "in LIB" shares the frame's line or not.
    assert leaks["? in /opt/pyrnn/_cuda.so"] == [2, 192]
    # Not pyrnn's, though a folder above is named pyrnn: its own group.
    assert leaks["(no pyrnn frame) ? in /lib/x86_64-linux-gnu/libcuda.so.1"] == [1, 256]
    assert sum(n for n, _ in leaks.values()) == 6
    _, leaks, _ = mod.parse(NEW.replace("/opt/pyrnn/_cuda.so", "/opt/other/lib.so"))
    assert leaks["(no pyrnn frame) ? in /lib/x86_64-linux-gnu/libcuda.so.1"] == [3, 448]


def test_older_format_and_other_error_kinds():
    mod = load_script("sanitize_summary")
    kinds, leaks, totals = mod.parse(OLD)
    assert kinds == {"Invalid __global__ write of": 1, "Leaked": 1}
    assert mod.verdict(kinds, totals) == ["1 x Invalid __global__ write of"]
    assert dict(leaks) == {"_ZN5pyrnn4cuda12DeviceBufferC1Em < __pyx_pw_5pyrnn_5_cuda_9to_device":
                           [1, 512]}


def test_summary_lines_per_log_largest_first(tmp_path):
    mod = load_script("sanitize_summary")
    (tmp_path / "memcheck.log").write_text(NEW)
    (tmp_path / "racecheck.log").write_text("========= RACECHECK SUMMARY: 0 hazards displayed "
                                            "(0 errors, 0 warnings)\n")
    lines, clean = mod.summarize(tmp_path)
    assert clean
    assert lines[0] == "memcheck.log: error kinds {'Leaked': 6}; passed"
    assert lines[1] == ("  leaked 1 allocations, 33554432 bytes, allocated under "
                        "pyrnn::cuda::Context::Context(int)")
    assert lines[2].startswith("  leaked 2 allocations, 3072 bytes")
    kinds, _, _ = mod.parse("========= Host API memory access error at 0x1 in cudaMemcpy\n"
                            "=========     Host Frame: cudaMemcpy [0x2]\n")  # initcheck's kind
    assert kinds == {"Host API memory access": 1}
    assert lines[-1] == "racecheck.log: error kinds none; passed"


# Reports the first parser missed (it knew a fixed list of leading words, case-sensitively): a
# log with errors read as "error kinds none".
MISSED = {
    "racecheck_warning.log": """========= COMPUTE-SANITIZER
========= Warning: Race reported between Read access at k()+0x600 in gru.cu:88
=========     and Write access at k()+0x640 in gru.cu:90 [256 hazards]
=========
========= RACECHECK SUMMARY: 1 hazard displayed (0 errors, 1 warning)
""",
    "racecheck_hazard.log": """========= COMPUTE-SANITIZER
========= ERROR: Potential WAW hazard detected at __shared__ 0x0 in block (0, 0, 0) :
=========     Write Thread (0, 0, 0) at 0x00000130 in k()
=========
========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)
""",
    "memcheck_hw.log": """========= COMPUTE-SANITIZER
========= Illegal Instruction
=========     at step_kernel+0x300
=========
========= ERROR SUMMARY: 1 error
""",
}


def test_every_report_is_a_finding_whatever_its_wording(tmp_path):
    mod = load_script("sanitize_summary")
    want = {"racecheck_warning.log": "Warning: Race reported between",
            "racecheck_hazard.log": "ERROR: Potential WAW hazard",
            "memcheck_hw.log": "Illegal Instruction"}
    for name, text in MISSED.items():
        kinds, _, totals = mod.parse(text)
        assert kinds == {want[name]: 1}, name
        assert mod.verdict(kinds, totals) == [f"1 x {want[name]}"], name
        (tmp_path / name).write_text(text)
    lines, clean = mod.summarize(tmp_path)
    assert not clean and all("FAILED" in line for line in lines)


def test_totals_the_reports_do_not_explain_and_unfinished_logs_fail():
    mod = load_script("sanitize_summary")
    # A total above the reports read (a report in a form nobody foresaw).
    kinds, _, totals = mod.parse("========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 2 errors\n")
    assert mod.verdict(kinds, totals) == ["ERROR SUMMARY counts 2 errors, 0 reports read"]
    kinds, _, totals = mod.parse("========= RACECHECK SUMMARY: 3 hazards displayed (1 error, 2 warnings)\n")
    assert mod.verdict(kinds, totals) == ["RACECHECK SUMMARY counts 3 hazards"]
    # No total: the tool (or the program under it) did not finish.
    kinds, _, totals = mod.parse("========= COMPUTE-SANITIZER\n")
    assert mod.verdict(kinds, totals) == [
        "no ERROR SUMMARY / RACECHECK SUMMARY line (the tool did not finish)"]


def test_exit_status(tmp_path):
    import subprocess
    import sys
    from _scripts import BENCHMARKS
    (tmp_path / "memcheck.log").write_text(NEW)
    ok = subprocess.run([sys.executable, str(BENCHMARKS / "sanitize_summary.py"), str(tmp_path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    (tmp_path / "racecheck.log").write_text(MISSED["racecheck_warning.log"])
    bad = subprocess.run([sys.executable, str(BENCHMARKS / "sanitize_summary.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "racecheck.log: error kinds" in bad.stdout


def test_unprinted_errors_and_several_processes():
    mod = load_script("sanitize_summary")
    # Past --print-limit the tool adds a second ERROR SUMMARY line; it overwrote the total.
    log = ("========= Invalid __global__ read of size 4 bytes\n=========     at k()+0x10\n=========\n"
           "========= ERROR SUMMARY: 5 errors\n"
           "========= ERROR SUMMARY: 4 errors were not printed. Use --print-limit option to "
           "adjust the number of printed errors\n")
    kinds, _, totals = mod.parse(log)
    assert totals == {"errors": 5, "unprinted": 4}
    assert mod.verdict(kinds, totals) == ["1 x Invalid __global__ read of",
                                          "ERROR SUMMARY counts 5 errors, 1 reports read",
                                          "4 errors not printed (past --print-limit)"]
    # Two processes, two totals: summed (the last one won, hiding the first process's errors).
    kinds, _, totals = mod.parse("========= ERROR SUMMARY: 2 errors\n========= ERROR SUMMARY: 0 errors\n")
    assert totals == {"errors": 2} and mod.verdict(kinds, totals)
    # Tab-indented details are details, not reports.
    kinds, _, totals = mod.parse("========= Leaked 8 bytes at 0x1\n=========\tHost Frame: f [0x2]\n"
                                 "========= ERROR SUMMARY: 1 error\n")
    assert kinds == {"Leaked": 1} and mod.verdict(kinds, totals) == []
