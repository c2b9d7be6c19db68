"""pyrnn.cuda's execution options without a GPU: process defaults from the environment, the
setters, validation, and configure() refusing non-CUDA layers. (What the options do on a device:
tests/test_cuda_speed.py; the C++ paths: the CUDA ctest suite, host emulation included.)"""
import os
import subprocess
import sys
import tempfile

import pytest

import pyrnn
import pyrnn.cuda

pytestmark = pytest.mark.skipif(not pyrnn.cuda.is_compiled(),
                                reason="built without the CUDA backend")

KEYS = {"precision", "algo", "graphs", "streams", "persist_blocks"}


@pytest.fixture(autouse=True)
def restore_defaults():
    yield
    pyrnn.cuda._need().set_default_options(precision="default", algo="default",
                                           graphs="default", streams="default",
                                           persist_blocks="default")


def run_py(code, **env):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("PYRNN_CUDA_"):
            del e[k]
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          cwd=tempfile.gettempdir(), timeout=60)  # not the source tree


def test_built_in_defaults():
    out = run_py("import pyrnn.cuda as c; print(sorted(c.options().items()))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted({"algo": "auto", "graphs": False, "persist_blocks": 0,
                                             "precision": "float32", "streams": False}.items()))


def test_environment_sets_the_defaults():
    out = run_py("import pyrnn.cuda as c; o = c.options(); "
                 "print(o['precision'], o['algo'], o['graphs'], o['streams'], o['persist_blocks'])",
                 PYRNN_CUDA_PRECISION="tf32", PYRNN_CUDA_RECURRENT="persistent",
                 PYRNN_CUDA_GRAPHS="1", PYRNN_CUDA_STREAMS="on", PYRNN_CUDA_PERSIST_BLOCKS="8")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tf32", "persistent", "True", "True", "8"]


def test_environment_default_is_the_built_in_value():
    # 'default' (any case) in every variable, PYRNN_CUDA_PERSIST_BLOCKS included.
    out = run_py("import pyrnn.cuda as c; print(sorted(c.options().items()))",
                 PYRNN_CUDA_PRECISION="default", PYRNN_CUDA_RECURRENT="Default",
                 PYRNN_CUDA_GRAPHS="default", PYRNN_CUDA_STREAMS="DEFAULT",
                 PYRNN_CUDA_PERSIST_BLOCKS="default")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted({"algo": "auto", "graphs": False, "persist_blocks": 0,
                                             "precision": "float32", "streams": False}.items()))


# Blanks are refused on either side, in PYRNN_CUDA_PERSIST_BLOCKS as in the others (a leading
# blank or '+' used to pass there, a trailing blank not).
@pytest.mark.parametrize("var, value", [("PYRNN_CUDA_RECURRENT", "warp"),
                                        ("PYRNN_CUDA_PRECISION", "bf16"),
                                        ("PYRNN_CUDA_GRAPHS", "maybe"),
                                        ("PYRNN_CUDA_GRAPHS", " on"),
                                        ("PYRNN_CUDA_GRAPHS", "on "),
                                        ("PYRNN_CUDA_PERSIST_BLOCKS", "-1"),
                                        ("PYRNN_CUDA_PERSIST_BLOCKS", " 8"),
                                        ("PYRNN_CUDA_PERSIST_BLOCKS", "8 "),
                                        ("PYRNN_CUDA_PERSIST_BLOCKS", "+8"),
                                        ("PYRNN_CUDA_PERSIST_BLOCKS", "65536")])
def test_bad_environment_is_a_clear_error(var, value):
    out = run_py("import pyrnn.cuda as c\ntry:\n    c.options()\nexcept RuntimeError as e:\n"
                 "    print('ERR', e)", **{var: value})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR") and var in out.stdout


@pytest.mark.parametrize("var, setter, value, key", [
    ("PYRNN_CUDA_RECURRENT", "set_recurrent_algo", "'cublas'", "algo"),
    ("PYRNN_CUDA_PRECISION", "set_precision", "'tf32'", "precision"),
    ("PYRNN_CUDA_STREAMS", "set_streams", "True", "streams"),
    ("PYRNN_CUDA_GRAPHS", "set_graphs", "True", "graphs"),
    ("PYRNN_CUDA_PERSIST_BLOCKS", "set_persist_blocks", "8", "persist_blocks"),
])
def test_setting_a_field_replaces_its_bad_environment_value(var, setter, value, key):
    # A typo in the environment used to make every setter raise too: the process could not
    # recover. Now the error stands until that field is set (process-wide or on a layer).
    code = f"""
import numpy as np, pyrnn, pyrnn.cuda as c
def attempt(f):
    try:
        return f()
    except RuntimeError as e:
        return 'ERR ' + str(e).split(' must')[0]
print(attempt(c.options))
other, set_other = ('streams', c.set_streams) if {key!r} == 'graphs' else ('graphs', c.set_graphs)
set_other(True)  # another field: the bad one still stands
print(attempt(c.options))
c.{setter}({value})
print(attempt(lambda: (c.options()[{key!r}], c.options()[other])))
c.{setter}(None)  # back to the environment's value: the error again
print(attempt(c.options))
if c.is_available():
    layer = pyrnn.LSTM(3, 4, device='cuda', seed=0)
    x = np.ones((2, 1, 3), np.float32)
    print(attempt(lambda: layer(x)[0].shape))
    c.configure(layer, {key}={value})
    print(attempt(lambda: tuple(layer(x)[0].shape)))
"""
    out = run_py(code, **{var: "bogus"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    want = value.strip("'") if value.startswith("'") else eval(value)
    assert lines[:4] == [f"ERR {var}", f"ERR {var}", f"({want!r}, True)", f"ERR {var}"], \
        out.stdout
    if len(lines) > 4:
        assert lines[4:] == [f"ERR {var}", "(2, 1, 4)"], out.stdout


def test_setters_and_reset():
    c = pyrnn.cuda
    c.set_precision("tf32")
    c.set_recurrent_algo("fused")
    c.set_graphs(True)
    c.set_streams(True)
    o = c.options()
    assert set(o) == KEYS
    assert (o["precision"], o["algo"], o["graphs"], o["streams"]) == ("tf32", "fused", True, True)
    assert c.get_precision() == "tf32"
    c.set_precision("default")
    c.set_recurrent_algo("default")
    c.set_graphs(None)
    c.set_streams("default")
    o = c.options()
    assert (o["precision"], o["algo"], o["graphs"], o["streams"]) == ("float32", "auto", False, False)
    # None resets these two too, as it does graphs and streams (it left them as they were).
    c.set_precision("tf32")
    c.set_recurrent_algo("fused")
    c.set_precision(None)
    c.set_recurrent_algo(None)
    assert (c.options()["precision"], c.options()["algo"]) == ("float32", "auto")


@pytest.mark.parametrize("call, match", [
    (lambda c: c.set_precision("bf16"), "precision"),
    (lambda c: c.set_recurrent_algo("warp"), "algo"),
    (lambda c: c.set_graphs("sometimes"), "graphs"),
    (lambda c: c._need().set_default_options(persist_blocks=-2), "persist_blocks"),
])
def test_bad_values(call, match):
    with pytest.raises(ValueError, match=match):
        call(pyrnn.cuda)


@pytest.mark.parametrize("value", [True, "8", 8.0])
def test_persist_blocks_of_another_type_is_a_type_error(value):
    # (a ValueError, where set_streams(1) is a TypeError)
    with pytest.raises(TypeError, match="persist_blocks must be an int"):
        pyrnn.cuda.set_persist_blocks(value)


def test_configure_needs_a_cuda_layer():
    with pytest.raises(ValueError, match="not a CUDA recurrent layer"):
        pyrnn.cuda.configure(pyrnn.LSTM(2, 3), algo="fused")
    with pytest.raises(ValueError, match="not a CUDA recurrent layer"):
        pyrnn.cuda.layer_options(pyrnn.Dense(2, 3))
