"""What compute-sanitizer's logs report: error kinds, and leaks grouped by where they were made.

    python benchmarks/sanitize_summary.py LOG_DIR     # every *.log there (cuda_sanitize.sh's)

A leak report is the line "Leaked N bytes at 0x..." and the host backtrace of its allocation,
one "Host Frame:" line each (older tools: "Host Frame:LIB (FUNCTION + 0xOFF) [0xADDR]", newer:
"Host Frame: FUNCTION [0xADDR]", then "in LIB" on a line of its own or the same one). Leaks are
grouped by the innermost two frames that are pyrnn's own: a Cython function of its modules
("__pyx_..." names say the module and the function, e.g. __pyx_pw_5pyrnn_5_cuda_9to_device), a
pyrnn:: C++ function (mangled or not), or one of its .py files (where the tool shows Python
frames). These names exist only in an unstripped build (gpu_session.sh installs with
install.strip=false); a stripped frame of pyrnn's libraries groups as "? in .../pyrnn/LIB", and
a leak with no frame of pyrnn's as "(no pyrnn frame)" and its first frame.
"""
import collections
import pathlib
import re
import sys

_ADDR = re.compile(r"\s*\[0x[0-9a-fA-F]+\]")
# pyrnn's own: its Cython functions, its C++ (plain or mangled), its .py files and, for a
# stripped frame, its extension libraries (a file directly in a pyrnn/ folder).
_OWN = re.compile(r"__pyx_|pyrnn::|pyrnn_|_ZN\d*5pyrnn|/pyrnn/[^/\s]+\.(?:py:\d+|so)")
_KINDS = re.compile(r"(Invalid|Program hit|Race|Uninitialized|Barrier|Error|Malloc|Cuda API|"
                    r"Host API|Unused|Potential|Misaligned|Out-of-range)")


def frame_name(text):
    """The function (or file:line) a frame line names, without addresses or library paths."""
    text = _ADDR.sub("", text).strip()
    if text.startswith("in "):  # no symbol (a stripped library): the library says whose
        return "? " + text
    m = re.match(r"(.*?) in (/\S+|\S+\.so\S*)$", text)  # newer: "FUNC in LIB"
    if m:
        text = m.group(1).strip()
    m = re.match(r"\S+ \((.+?)(?: \+ 0x[0-9a-fA-F]+)?\)$", text)  # older: "LIB (FUNC + 0xOFF)"
    if m:
        text = m.group(1).strip()
    return text or "(unnamed)"


def parse(text):
    """(kinds Counter, leaks {group: [count, bytes]}) of one log's text."""
    kinds, leaks = collections.Counter(), collections.defaultdict(lambda: [0, 0])
    block = None  # [kind, bytes, [frames]] of the report being read

    def close(b):
        if b and b[0] == "leak":
            own = [f for f in b[2] if _OWN.search(f)]
            key = " < ".join(own[:2]) if own else "(no pyrnn frame) " + (b[2][0] if b[2] else "")
            leaks[key][0] += 1
            leaks[key][1] += b[1]

    for line in text.splitlines():
        if not line.startswith("========="):
            continue
        body = line[len("========="):].strip()
        m = re.match(r"Leaked (\d+) bytes", body)
        if m or _KINDS.match(body):
            close(block)
            kinds["Leaked" if m else " ".join(body.split()[:4])] += 1
            block = ["leak", int(m.group(1)), []] if m else ["other", 0, []]
        elif block and re.match(r"(Host|Python) Frame:", body):
            block[2].append(frame_name(body.split(":", 1)[1]))
        elif block and block[2] and body.startswith("in "):  # "FUNC [0x..]" then "in LIB"
            if block[2][-1] == "(unnamed)":  # an address only: the library says whose
                block[2][-1] = "? " + body
            continue
        elif not body or body.startswith(("LEAK SUMMARY", "ERROR SUMMARY")):
            close(block)
            block = None
    close(block)
    return kinds, leaks


def summarize(log_dir, top=12):
    lines = []
    for log in sorted(pathlib.Path(log_dir).glob("*.log")):
        kinds, leaks = parse(log.read_text(errors="replace"))
        lines.append(f"{log.name}: error kinds {dict(kinds) or 'none'}")
        for key, (n, nbytes) in sorted(leaks.items(), key=lambda kv: -kv[1][1])[:top]:
            lines.append(f"  leaked {n} allocations, {nbytes} bytes, allocated under {key}")
    return lines


if __name__ == "__main__":
    for line in summarize(sys.argv[1]):
        print(line)
