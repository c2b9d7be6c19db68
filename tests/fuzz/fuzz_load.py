"""Fuzz target: pyrnn.load on arbitrary bytes. It must return a model or raise ValueError;
anything else (another exception, a crash, a hang, an absurd allocation) is a finding.

Two modes, chosen by the first byte, so the fuzzer gets past the checksums:
  even: the bytes are the file, as they are;
  odd:  the bytes are "<header JSON>\\0<payload>" and the harness writes a well-formed
        prefix (magic, version, lengths, CRCs) around them: the JSON and tensor checks.

Run (atheris, coverage-guided; see README "Reliability"):
    python tests/fuzz/fuzz_load.py -max_total_time=60 CORPUS_DIR tests/fuzz/corpus/load
Without atheris, test_one_input() is plain Python (tests/test_fuzz_corpus.py replays the
seed corpus through it in the normal test run).
"""
import atexit
import os
import shutil
import struct
import tempfile
import zlib

_dir = None  # made on the first input, not at import: pytest-xdist workers import this
             # module to collect it and leave without running atexit handlers


def _path():
    global _dir
    if _dir is None:
        _dir = tempfile.mkdtemp(prefix="pyrnn-fuzz-load-")
        atexit.register(cleanup)
    return os.path.join(_dir, "input.pyrnn")


def cleanup():
    """Removes the folder the inputs were written to (test_fuzz_corpus calls it when done)."""
    global _dir
    if _dir is not None:
        shutil.rmtree(_dir, ignore_errors=True)
        _dir = None


def build_file(data):
    """The bytes the target loads for one fuzz input (see the modes above)."""
    if not data:
        return b""
    mode, body = data[0], data[1:]
    if mode % 2 == 0:
        return body
    header, _, payload = body.partition(b"\0")
    return struct.pack("<8sIIQQII", b"\x89PYRNN\r\n", 1, 0, len(header), len(payload),
                       zlib.crc32(header), zlib.crc32(payload)) + header + payload


def test_one_input(data, pyrnn=None):
    if pyrnn is None:
        import pyrnn
    path = _path()
    with open(path, "wb") as f:
        f.write(build_file(data))
    try:
        model = pyrnn.load(path)
    except ValueError:
        return
    # A model that loads must be usable as declared: its parameters are finite-or-not
    # arrays of the declared shapes, and save() round-trips it.
    for p in model.parameters():
        assert p.data.shape == p.grad.shape
    model.save(path + ".again")
    again = pyrnn.load(path + ".again")
    assert list(again.params) == list(model.params)


if __name__ == "__main__":
    from _atheris_main import run
    run(test_one_input)
