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

Every other report is a finding: a report starts at a line the tool does not indent (its
details are indented), whatever its wording or case ("Invalid __global__ read", "Error: Race
reported", "Warning: Race reported", "ERROR: Potential WAW hazard", "Illegal Instruction",
"Program hit ..."). The tool's own totals ("ERROR SUMMARY: N errors", "RACECHECK SUMMARY: N
hazards displayed (E errors, W warnings)") are read too: a log without one did not finish, and a
total above the reports counted is unexplained. Leaks alone do not fail: the per-device Context
(stream, cuBLAS handles, workspaces) is kept until the process exits on purpose, and is listed
with the rest. Exit status 1 when any log has a finding, an unexplained total or no total.
"""
import collections
import pathlib
import re
import sys

_ADDR = re.compile(r"\s*\[0x[0-9a-fA-F]+\]")
# pyrnn's own: its Cython functions, its C++ (plain or mangled), its .py files and, for a
# stripped frame, its extension libraries (a file directly in a pyrnn/ folder).
_OWN = re.compile(r"__pyx_|pyrnn::|pyrnn_|_ZN\d*5pyrnn|/pyrnn/[^/\s]+\.(?:py:\d+|so)")
# Lines that are not reports: the banner and the totals.
_BANNER = re.compile(r"(COMPUTE-SANITIZER|CUDA-MEMCHECK)\s*$")
_TOTAL = re.compile(r"(ERROR|LEAK|RACECHECK) SUMMARY:")


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
    """(kinds Counter, leaks {group: [count, bytes]}, totals) of one log's text. totals:
    {"errors": ERROR SUMMARY's count, "hazards": RACECHECK SUMMARY's (errors + warnings)}, each
    present only when the log has that line."""
    kinds, leaks = collections.Counter(), collections.defaultdict(lambda: [0, 0])
    totals = {}
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
        rest = line[len("========="):]
        body = rest.strip()
        if not body:  # the blank line that ends a report
            close(block)
            block = None
            continue
        if _TOTAL.match(body):
            close(block)
            block = None
            # Summed: a log of several processes (children) has one total per process.
            m = re.match(r"ERROR SUMMARY: (\d+) errors? were not printed", body)
            if m:  # past --print-limit: errors nobody can read are errors all the same
                totals["unprinted"] = totals.get("unprinted", 0) + int(m.group(1))
                continue
            m = re.match(r"ERROR SUMMARY: (\d+) error", body)
            if m:
                totals["errors"] = totals.get("errors", 0) + int(m.group(1))
            m = re.match(r"RACECHECK SUMMARY: (\d+) hazards? displayed(?: \((\d+) errors?, "
                         r"(\d+) warnings?\))?", body)
            if m:
                totals["hazards"] = totals.get("hazards", 0) + (
                    int(m.group(2)) + int(m.group(3)) if m.group(2) else int(m.group(1)))
            continue
        indented = rest.startswith(("  ", "\t", " \t"))  # details; a report's first line has one blank
        if not indented and not _BANNER.match(body):
            close(block)
            m = re.match(r"Leaked (\d+) bytes", body)
            kinds["Leaked" if m else " ".join(body.split()[:4])] += 1
            block = ["leak", int(m.group(1)), []] if m else ["other", 0, []]
        elif block and re.match(r"(Host|Python) Frame:", body):
            block[2].append(frame_name(body.split(":", 1)[1]))
        elif block and block[2] and body.startswith("in "):  # "FUNC [0x..]" then "in LIB"
            if block[2][-1] == "(unnamed)":  # an address only: the library says whose
                block[2][-1] = "? " + body
    close(block)
    return kinds, leaks, totals


def verdict(kinds, totals):
    """What fails in one log: its findings (every report but leaks), a total the reports do not
    explain, or no total at all (the tool did not finish); [] when clean."""
    problems = [f"{n} x {kind}" for kind, n in sorted(kinds.items()) if kind != "Leaked"]
    if not totals:
        problems.append("no ERROR SUMMARY / RACECHECK SUMMARY line (the tool did not finish)")
    reports = sum(kinds.values())
    if totals.get("errors", 0) > reports:
        problems.append(f"ERROR SUMMARY counts {totals['errors']} errors, {reports} reports read")
    if totals.get("unprinted"):
        problems.append(f"{totals['unprinted']} errors not printed (past --print-limit)")
    if totals.get("hazards", 0) and not problems:
        problems.append(f"RACECHECK SUMMARY counts {totals['hazards']} hazards")
    return problems


def summarize(log_dir, top=12):
    """(lines to print, whether every log is clean but for leaks)."""
    lines, clean = [], True
    logs = sorted(pathlib.Path(log_dir).glob("*.log"))
    if not logs:
        return [f"no *.log in {log_dir}"], False
    for log in logs:
        kinds, leaks, totals = parse(log.read_text(errors="replace"))
        problems = verdict(kinds, totals)
        clean = clean and not problems
        lines.append(f"{log.name}: error kinds {dict(kinds) or 'none'}; "
                     + ("FAILED: " + "; ".join(problems) if problems else "passed"))
        for key, (n, nbytes) in sorted(leaks.items(), key=lambda kv: -kv[1][1])[:top]:
            lines.append(f"  leaked {n} allocations, {nbytes} bytes, allocated under {key}")
    return lines, clean


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} LOG_FOLDER (compute-sanitizer's *.log files)",
              file=sys.stderr)
        sys.exit(2)
    out, ok = summarize(sys.argv[1])
    for line in out:
        print(line)
    sys.exit(0 if ok else 1)
