"""The `pyrnn` command line (also `python -m pyrnn`)."""
import argparse
import json
import sys


def _info(args):
    from . import info
    facts = info()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    labels = [("version", "pyrnn version"), ("cpu_isa", "CPU kernels"),
              ("cpu_isa_error", "CPU kernels status"),
              ("available_isas", "CPU ISAs available"), ("num_threads", "threads"),
              ("cpu_wait_policy", "thread wait policy"),
              ("memory_limit", "memory limit"), ("memory_limit_error", "memory limit status"),
              ("cuda_compiled", "CUDA backend compiled"), ("cuda_available", "CUDA available"),
              ("cuda_devices", "CUDA devices"), ("cuda_unavailable_reason", "CUDA status"),
              ("include_dir", "C++ headers"), ("cmake_dir", "CMake package")]
    width = max(len(label) for _, label in labels)
    for key, label in labels:
        value = facts[key]
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        elif value is None:
            value = "ok" if key.endswith(("_error", "_reason")) else "none"
        elif key == "memory_limit":
            value = ("every allocation refused: PYRNN_MEMORY_LIMIT is no size (below)"
                     if facts["memory_limit_error"]
                     else f"{_size_text(value)} per request ({value} bytes)")
        print(f"{label:<{width}}  {value}")
    return 0


def _size_text(n):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def cpu_ready(command):
    """False (and why, on stderr) while PYRNN_CPU_ISA names no usable ISA: a message and exit 2
    before any work, not a traceback from the first pass."""
    import pyrnn
    try:
        pyrnn.get_cpu_isa()
    except RuntimeError as e:
        print(f"pyrnn {command}: {e}", file=sys.stderr)
        return False
    return True


_interrupted = [False]  # guarded() ended on Ctrl-C (entry() then ends by SIGINT)


def guarded(command, func, args):
    """func(args)'s exit status; Ctrl-C is one line and status 130 (not a traceback), a
    MemoryError one line and status 1 (2 for a PYRNN_MEMORY_LIMIT that is no size), a reader
    that closed the pipe (`| head`) ends the command quietly, and what the system refuses (a
    full disk under stdout, threads over a process limit) or the command itself refuses (bench's
    results disagreeing with PyTorch's) is one line and status 1 (2 for the threads: a setting)."""
    try:
        return func(args)
    except KeyboardInterrupt:
        _interrupted[0] = True
        print(f"pyrnn {command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:
        # pyrnn's own, naming PYRNN_MEMORY_LIMIT or the machine's memory: one line, as a bad
        # PYRNN_CPU_ISA gets (a bad setting is a usage error, status 2)
        print(f"pyrnn {command}: {e or 'out of memory'}", file=sys.stderr)
        return 2 if "is not a size" in str(e) else 1
    except BrokenPipeError as e:
        if not _stdout_closed():  # another pipe (e.g. --json into one): say so
            print(f"pyrnn {command}: {e}", file=sys.stderr)
            return 1
        _silence_stdout()
        return 1
    except (OSError, RuntimeError) as e:
        # What the system or pyrnn refuses, in words: OSError, and pyrnn's plain RuntimeError
        # with a message (a RecursionError, NotImplementedError or bare RuntimeError is a bug:
        # its traceback stays)
        if isinstance(e, RuntimeError) and (type(e) is not RuntimeError or not str(e)):
            raise
        try:
            sys.stdout.flush()
        except (AttributeError, OSError, ValueError):  # (stdout's own error: not again at exit)
            _silence_stdout()
        text = str(e) or type(e).__name__
        threads = (isinstance(e, RuntimeError) and text.startswith("cannot start")
                   and "thread" in text)
        try:
            print(f"pyrnn {command}: {text}" + (" (--threads sets the count)" if threads
                                                  and command != "info" else ""),
                  file=sys.stderr)
        except (AttributeError, OSError, ValueError):
            pass
        return 2 if threads else 1


def _stdout_closed():
    """Whether stdout is a pipe whose reader went away (poll reports an error on it)."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or no real descriptor
        return False


def _silence_stdout():
    # Python would report the closed pipe again while flushing stdout at exit: point the
    # descriptor at /dev/null (a real file descriptor only; a redirected sys.stdout has none).
    import os
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # (None: started with it closed)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _demo(args):
    from . import demo
    return demo.main_args(args)  # (it checks cpu_ready: also for python -m pyrnn.demo)


def _bench(args):
    from . import bench
    return bench.main_args(args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyrnn", description="pyrnn command line")
    sub = parser.add_subparsers(dest="command")
    p_info = sub.add_parser("info", help="build and runtime information")
    p_info.add_argument("--json", action="store_true", help="print as JSON")
    p_info.set_defaults(func=_info)
    from . import bench, demo  # light modules: they import numpy and pyrnn lazily
    p_demo = sub.add_parser("demo", help="RNN vs GRU vs LSTM on the adding problem, and a "
                            "character-level GRU on Shakespeare (seconds on two cores)",
                            description=demo.__doc__.split("\n")[0])
    demo.add_arguments(p_demo)
    p_demo.set_defaults(func=_demo)
    p_bench = sub.add_parser("bench", help="the seeds' CPU-vs-GPU forward-time table, measured "
                             "here (PyTorch alongside when installed)",
                             description=bench.__doc__.split("\n")[0])
    bench.add_arguments(p_bench)
    p_bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return guarded(args.command, args.func, args)


def entry():
    """The console script (and python -m pyrnn)."""
    exit_with(main())


def exit_with(status):
    """sys.exit(status), but after a Ctrl-C (guarded's status 130) the end by SIGINT itself
    that a shell loop needs to stop too (`for ...; do pyrnn demo; done` went on with its next
    command after status 130); the shell still reports status 130."""
    if _interrupted[0] and status == 130:
        import os
        import signal
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # (None: started with it closed)
                pass
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except (OSError, ValueError):  # (not the main thread, or no such signal)
            pass
    sys.exit(status)


if __name__ == "__main__":
    entry()
