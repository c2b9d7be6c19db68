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
    kinds, leaks = mod.parse(NEW)
    assert kinds == {"Leaked": 6}
    empty = ("pyrnn::cuda::DeviceBuffer::allocate(unsigned long) < "
             "__pyx_pw_5pyrnn_5_cuda_11DeviceArray_5empty")
    assert leaks[empty] == [2, 3072]  # the frame split over two lines groups with the other
    assert leaks["pyrnn::cuda::Context::Context(int)"] == [1, 33554432]
    # A stripped build: its library, whether "in LIB" shares the frame's line or not.
    assert leaks["? in /opt/pyrnn/_cuda.so"] == [2, 192]
    # Not pyrnn's, though a folder above is named pyrnn: its own group.
    assert leaks["(no pyrnn frame) ? in /lib/x86_64-linux-gnu/libcuda.so.1"] == [1, 256]
    assert sum(n for n, _ in leaks.values()) == 6
    _, leaks = mod.parse(NEW.replace("/opt/pyrnn/_cuda.so", "/opt/other/lib.so"))
    assert leaks["(no pyrnn frame) ? in /lib/x86_64-linux-gnu/libcuda.so.1"] == [3, 448]


def test_older_format_and_other_error_kinds():
    mod = load_script("sanitize_summary")
    kinds, leaks = mod.parse(OLD)
    assert kinds == {"Invalid __global__ write of": 1, "Leaked": 1}
    assert dict(leaks) == {"_ZN5pyrnn4cuda12DeviceBufferC1Em < __pyx_pw_5pyrnn_5_cuda_9to_device":
                           [1, 512]}


def test_summary_lines_per_log_largest_first(tmp_path):
    mod = load_script("sanitize_summary")
    (tmp_path / "memcheck.log").write_text(NEW)
    (tmp_path / "racecheck.log").write_text("========= RACECHECK SUMMARY: 0 hazards displayed\n"
                                            "========= ERROR SUMMARY: 0 errors\n")
    lines = mod.summarize(tmp_path)
    assert lines[0] == "memcheck.log: error kinds {'Leaked': 6}"
    assert lines[1] == ("  leaked 1 allocations, 33554432 bytes, allocated under "
                        "pyrnn::cuda::Context::Context(int)")
    assert lines[2].startswith("  leaked 2 allocations, 3072 bytes")
    kinds, _ = mod.parse("========= Host API memory access error at 0x1 in cudaMemcpy\n"
                         "=========     Host Frame: cudaMemcpy [0x2]\n")  # initcheck's kind
    assert kinds == {"Host API memory access": 1}
    assert lines[-1] == "racecheck.log: error kinds none"
