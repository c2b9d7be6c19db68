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
              ("available_isas", "CPU ISAs available"), ("num_threads", "threads"),
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
            value = "ok"
        print(f"{label:<{width}}  {value}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyrnn", description="pyrnn command line")
    sub = parser.add_subparsers(dest="command")
    p_info = sub.add_parser("info", help="build and runtime information")
    p_info.add_argument("--json", action="store_true", help="print as JSON")
    p_info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
