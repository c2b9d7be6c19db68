"""pyrnn.export_onnx: exported graphs run with onnxruntime and onnx.reference.ReferenceEvaluator
and compared with pyrnn's own outputs, random weights, every cell.

Evaluator coverage (as of onnx 1.23 / onnxruntime 1.31):
- onnxruntime implements RNN/LSTM/GRU in float32 only ("does not support double yet"):
  float64 graphs are checked with the reference evaluator alone.
- ReferenceEvaluator ignores ``sequence_lens`` and knows only Tanh/Affine for RNN
  activations: cases with lengths are checked with onnxruntime only; for RNN relu the
  evaluator gets a small RNN override adding Relu (the ONNX definition: max(0, x)).
- For lengths in float64 the evaluator's RNN/LSTM/GRU are replaced by the NumPy
  transcription of the operator definitions in test_onnx_cases.py (which implements
  sequence_lens with onnxruntime's = PyTorch's semantics); the rest of the graph (Cast,
  Slice, Transpose, Reshape, GatherND, ...) still runs in the reference evaluator.
"""
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.ops.op_rnn import RNN_14  # noqa: E402

import pyrnn  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover
    ort = None

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-10)}
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_after"]
C, H = 4, 5


class RNN(RNN_14):
    """The reference RNN plus the Relu activation (ONNX: Relu(x) = max(0, x))."""
    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0)
        return super().choose_act(name, alpha, beta)


def _transcribed_op(op):
    """An evaluator op running test_onnx_cases.onnx_recurrent (float64 transcription)."""
    from onnx.reference.op_run import OpRun
    from test_onnx_cases import onnx_recurrent

    def _run(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None,
             P=None, **_):
        assert P is None
        acts = [a.decode() if isinstance(a, bytes) else a
                for a in (getattr(self, "activations", None) or ["Tanh"])]
        outs = onnx_recurrent(op, X, W, R, B, sequence_lens, initial_h, initial_c,
                              direction=self.direction, layout=self.layout or 0,
                              linear_before_reset=getattr(self, "linear_before_reset", 0) or 0,
                              activation="relu" if acts[0].lower() == "relu" else "tanh")
        return tuple(o.astype(X.dtype) for o in outs[:len(self.onnx_node.output)])

    return type(op, (OpRun,), {"op_domain": "", "_run": _run})


def _run_transcribed(model, feeds):
    ops = [_transcribed_op(op) for op in ("RNN", "GRU", "LSTM")]
    return ReferenceEvaluator(model, new_ops=ops).run(None, feeds)


def _layer(cell, dtype="float32", seed=0, **kw):
    kw = dict(kw, dtype=dtype, seed=seed)
    if cell == "lstm":
        layer = pyrnn.LSTM(C, H, **kw)
    elif cell.startswith("gru"):
        layer = pyrnn.GRU(C, H, reset_after=cell == "gru_reset_after", **kw)
    else:
        layer = pyrnn.RNN(C, H, nonlinearity=cell[4:], **kw)
    rng = np.random.default_rng(seed + 100)
    for p in layer.params.values():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    return layer.eval()


def _run_ort(model, feeds):
    if ort is None:
        pytest.skip("onnxruntime is not installed")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _run_ref(model, feeds):
    return ReferenceEvaluator(model, new_ops=[RNN]).run(None, feeds)


def _pyrnn_outputs(layer, x, h0=None, c0=None, lengths=None):
    hx = None
    if h0 is not None:
        hx = (h0, c0) if isinstance(layer, pyrnn.LSTM) else h0
    y, hn = layer(x, hx, lengths)
    return [y, hn[0], hn[1]] if isinstance(layer, pyrnn.LSTM) else [y, hn]


def _check(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **tol)


CONFIGS = {
    "plain": (dict(), dict()),
    "bidirectional": (dict(bidirectional=True), dict()),
    "2layers": (dict(num_layers=2, bidirectional=True, dropout=0.2), dict()),
    "batch_first": (dict(num_layers=2, batch_first=True), dict()),
    "no_bias": (dict(bias=False, bidirectional=True), dict()),
    "initial_states": (dict(num_layers=2, bidirectional=True), dict(initial_states=True)),
    "lengths": (dict(num_layers=2, bidirectional=True, batch_first=True),
                dict(lengths=True, initial_states=True)),
}


def _case(cell, config, dtype, T=6, N=3):
    layer_kw, export_kw = CONFIGS[config]
    layer = _layer(cell, dtype, **layer_kw)
    model = pyrnn.export_onnx(layer, None, **export_kw)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, T, C) if layer.batch_first else (T, N, C)).astype(dtype)
    LD = layer.num_layers * layer.num_directions
    feeds = {"X": x}
    h0 = c0 = lengths = None
    if export_kw.get("initial_states"):
        h0 = feeds["h0"] = rng.standard_normal((LD, N, H)).astype(dtype)
        if cell == "lstm":
            c0 = feeds["c0"] = rng.standard_normal((LD, N, H)).astype(dtype)
    if export_kw.get("lengths"):
        lengths = feeds["lengths"] = np.array([T, 2, 4], np.int64)[:N]
    if cell == "lstm" and h0 is None and c0 is not None:  # pragma: no cover
        h0 = np.zeros_like(c0)
    return layer, model, feeds, _pyrnn_outputs(layer, x, h0, c0, lengths)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", CELLS)
def test_layer_float32(cell, config):
    layer, model, feeds, want = _case(cell, config, "float32")
    if config != "lengths":  # the reference evaluator ignores sequence_lens
        _check(_run_ref(model, feeds), want, TOL["float32"])
    _check(_run_ort(model, feeds), want, TOL["float32"])  # skips without onnxruntime


@pytest.mark.parametrize("config", ["2layers", "batch_first", "initial_states"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_float64_reference(cell, config):
    layer, model, feeds, want = _case(cell, config, "float64")
    _check(_run_ref(model, feeds), want, TOL["float64"])


def test_graph_structure_and_dynamic_axes(tmp_path):
    layer = _layer("gru_reset_after", num_layers=2, bidirectional=True, batch_first=True)
    path = tmp_path / "gru.onnx"
    model = pyrnn.export_onnx(layer, path)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    ops = [n.op_type for n in loaded.graph.node]
    assert ops.count("GRU") == 2
    grus = [n for n in loaded.graph.node if n.op_type == "GRU"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in grus[0].attribute}
    assert attrs["linear_before_reset"] == 1 and attrs["direction"] == b"bidirectional"
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in loaded.graph.input]
    assert dims == [["batch", "seq_len", C]]
    assert [o.name for o in loaded.graph.output] == ["Y", "Y_h"]
    assert model.graph.name == loaded.graph.name
    for N, T in ((1, 3), (4, 9)):  # one model, any batch and sequence length
        x = np.random.default_rng(N).standard_normal((N, T, C)).astype(np.float32)
        _check(_run_ref(loaded, {"X": x}), _pyrnn_outputs(layer, x), TOL["float32"])
        if ort is not None:
            _check(_run_ort(loaded, {"X": x}), _pyrnn_outputs(layer, x), TOL["float32"])
    # GRU reset_after=False -> linear_before_reset=0, relu RNN -> activations Relu
    g0 = pyrnn.export_onnx(_layer("gru"))
    node = next(n for n in g0.graph.node if n.op_type == "GRU")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}[
        "linear_before_reset"] == 0
    r = pyrnn.export_onnx(_layer("rnn_relu", bidirectional=True))
    node = next(n for n in r.graph.node if n.op_type == "RNN")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}[
        "activations"] == [b"Relu", b"Relu"]


def test_fixed_axes():
    model = pyrnn.export_onnx(_layer("lstm"), seq_len=6, batch=2)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [6, 2, C]


@pytest.mark.parametrize("config", ["lengths", "initial_states"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_float64_transcription(cell, config):
    layer, model, feeds, want = _case(cell, config, "float64")
    _check(_run_transcribed(model, feeds), want, TOL["float64"])


# ---- Sequential models ----------------------------------------------------------------------

def _classifier(bidirectional, reset_after, dtype="float32"):
    model = pyrnn.Sequential([
        pyrnn.Embedding(20, 6, dtype=dtype, seed=1),
        pyrnn.Dropout(0.3),
        pyrnn.GRU(6, 8, batch_first=True, bidirectional=bidirectional,
                  reset_after=reset_after, dtype=dtype, seed=2),
        pyrnn.LastStep(),
        pyrnn.Dense(8 * (2 if bidirectional else 1), 3, dtype=dtype, seed=3),
    ])
    rng = np.random.default_rng(4)
    for p in model.parameters():
        p.data[...] = rng.uniform(-0.6, 0.6, p.data.shape)
    return model.eval()


def _regressor(dtype="float32"):
    model = pyrnn.Sequential([
        pyrnn.LSTM(C, 8, batch_first=True, dtype=dtype, seed=1),
        pyrnn.LastStep(),
        pyrnn.LayerNorm(8, dtype=dtype),
        pyrnn.Dense(8, 6, activation="relu", dtype=dtype, seed=2),
        pyrnn.Dense(6, 1, dtype=dtype, seed=3),
    ])
    rng = np.random.default_rng(5)
    for p in model.parameters():
        p.data[...] = rng.uniform(-0.6, 0.6, p.data.shape)
    return model.eval()


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("bidirectional,reset_after", [(False, True), (True, False)])
def test_sequential_classifier(bidirectional, reset_after, lengths):
    model = _classifier(bidirectional, reset_after)
    onx = pyrnn.export_onnx(model, lengths=lengths)
    assert [i.name for i in onx.graph.input] == (["X", "lengths"] if lengths else ["X"])
    rng = np.random.default_rng(6)
    x = rng.integers(0, 20, size=(4, 7))
    lens = np.array([7, 1, 3, 5])
    feeds = {"X": x.astype(np.int64)}
    if lengths:
        feeds["lengths"] = lens
    want = model.forward(x, lengths=lens if lengths else None)
    if not lengths:
        _check(_run_ref(onx, feeds), [want], TOL["float32"])
    _check(_run_ort(onx, feeds), [want], TOL["float32"])


@pytest.mark.parametrize("lengths", [False, True])
def test_sequential_regressor(lengths):
    model = _regressor()
    onx = pyrnn.export_onnx(model, lengths=lengths)
    assert "LayerNormalization" in [n.op_type for n in onx.graph.node]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 9, C)).astype(np.float32)
    lens = np.array([9, 3, 1, 6, 8])
    feeds = {"X": x}
    if lengths:
        feeds["lengths"] = lens
    want = model.forward(x, lengths=lens if lengths else None)
    assert want.shape == (5, 1)
    if not lengths:
        _check(_run_ref(onx, feeds), [want], TOL["float32"])
    _check(_run_ort(onx, feeds), [want], TOL["float32"])


@pytest.mark.parametrize("lengths", [False, True])
def test_nested_sequential_laststep_after_bidirectional(lengths):
    """A LastStep in a nested Sequential after a bidirectional layer of the outer one exports
    like the flat model (the reverse half at step 0)."""
    g = pyrnn.GRU(C, 3, batch_first=True, bidirectional=True, reset_after=True, seed=0)
    model = pyrnn.Sequential([g, pyrnn.Sequential([pyrnn.LastStep(), pyrnn.Dense(6, 1, seed=1)])])
    flat = pyrnn.Sequential([g, pyrnn.LastStep(), model.layers[1].layers[1]])
    x = np.random.default_rng(11).standard_normal((4, 6, C)).astype(np.float32)
    lens = np.array([6, 2, 1, 4])
    feeds = {"X": x, "lengths": lens} if lengths else {"X": x}
    want = flat.forward(x, lengths=lens if lengths else None)
    np.testing.assert_array_equal(model.forward(x, lengths=lens if lengths else None), want)
    onx = pyrnn.export_onnx(model, lengths=lengths)
    if not lengths:
        _check(_run_ref(onx, feeds), [want], TOL["float32"])
    _check(_run_ort(onx, feeds), [want], TOL["float32"])


def test_sequential_float64_reference():
    model = _regressor("float64")
    onx = pyrnn.export_onnx(model)
    x = np.random.default_rng(9).standard_normal((3, 5, C))
    _check(_run_ref(onx, {"X": x}), [model.forward(x)], TOL["float64"])
    clf = _classifier(True, True, "float64")
    idx = np.random.default_rng(10).integers(0, 20, size=(2, 4))
    _check(_run_ref(pyrnn.export_onnx(clf), {"X": idx}), [clf.forward(idx)], TOL["float64"])
    # with lengths (recurrent ops from the transcription, which implements sequence_lens)
    lens = np.array([2, 5, 1])
    _check(_run_transcribed(pyrnn.export_onnx(model, lengths=True), {"X": x, "lengths": lens}),
           [model.forward(x, lengths=lens)], TOL["float64"])
    lens = np.array([4, 1])
    _check(_run_transcribed(pyrnn.export_onnx(clf, lengths=True), {"X": idx, "lengths": lens}),
           [clf.forward(idx, lengths=lens)], TOL["float64"])


# ---- errors ---------------------------------------------------------------------------------

def test_export_errors(monkeypatch):
    with pytest.raises(ValueError, match="opset >= 17"):
        pyrnn.export_onnx(_regressor(), opset=16)
    with pytest.raises(ValueError, match="opset must be an int >= 13, got 11"):
        pyrnn.export_onnx(_layer("lstm"), opset=11)
    with pytest.raises(TypeError, match="export_onnx takes"):
        pyrnn.export_onnx(pyrnn.Dense(3, 2))
    with pytest.raises(ValueError, match="one float dtype"):
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Dense(3, 2), pyrnn.Dense(2, 2, dtype="float64")]))
    with pytest.raises(ValueError, match="seq_len"):
        pyrnn.export_onnx(_layer("gru"), seq_len=0)
    with pytest.raises(ValueError, match="initial_states"):
        pyrnn.export_onnx(_regressor(), initial_states=True)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        pyrnn.export_onnx(_layer("gru"))


@pytest.mark.parametrize("layers, message", [
    # Each once exported: the first gave a graph onnxruntime ran (output (N,)), the second
    # failed only inside onnxruntime. pyrnn refuses to run both.
    (lambda: [pyrnn.LSTM(3, 4, batch_first=True), pyrnn.LastStep(), pyrnn.LastStep()],
     r"layer 2 \(LastStep\(\)\) takes a sequence \(N, T, F\), but the layers before it give "
     r"\(N, F\)"),
    (lambda: [pyrnn.Dense(3, 5), pyrnn.LSTM(4, 4, batch_first=True)],
     r"layer 1 \(LSTM\(4, 4, batch_first=True\)\) takes 4 features, but the layers before it "
     r"give 5"),
    (lambda: [pyrnn.GRU(3, 4, batch_first=True), pyrnn.LastStep(), pyrnn.GRU(4, 2, batch_first=True)],
     r"layer 2 .* takes a sequence"),
    (lambda: [pyrnn.Embedding(9, 3), pyrnn.Dense(4, 2)], r"layer 1 .* takes 4 features.* give 3"),
    (lambda: [pyrnn.Dense(3, 5), pyrnn.LayerNorm(4)], r"layer 1 \(LayerNorm\(4\)\) takes 4"),
    # A bidirectional LastStep (told so, or after a bidirectional layer) needs an even width
    # (was exported: onnx.checker's shape error, or with check=False a Y narrower than declared).
    (lambda: [pyrnn.GRU(3, 4, bidirectional=True, batch_first=True), pyrnn.Dense(8, 5),
              pyrnn.LastStep(bidirectional=True)],
     r"layer 2 \(LastStep\(.*\)\) takes a bidirectional output"),
    (lambda: [pyrnn.GRU(3, 5, batch_first=True), pyrnn.LastStep(bidirectional=True)],
     r"layer 1 .* bidirectional output \(N, T, 2\*H\), but the layers before it give 5"),
    # Dropout gives the ids back as floats, which Embedding refuses (was exported).
    (lambda: [pyrnn.Dropout(0.1), pyrnn.Embedding(5, 3), pyrnn.GRU(3, 2, batch_first=True)],
     r"layer 1 \(Embedding.*\) takes integer ids, so it must come first")])
def test_a_model_that_cannot_run_is_not_exported(layers, message):
    model = pyrnn.Sequential(layers())
    x = np.zeros((2, 3), np.int64) if isinstance(model.layers[0], pyrnn.Embedding) else \
        np.zeros((2, 3, 3), np.float32)
    with pytest.raises((ValueError, TypeError)):
        model(x)  # pyrnn refuses to run it ...
    with pytest.raises(ValueError, match="cannot export: " + message + ".*the model cannot run"):
        pyrnn.export_onnx(model)  # ... so there is nothing faithful to export


@pytest.mark.parametrize("opset", [10**3, 17.9, "17", True])
def test_opset_must_be_an_int_this_onnx_knows(tmp_path, opset):
    # opset=1000 was written (onnxruntime then refused the file) and 17.9 became 17.
    with pytest.raises(ValueError, match="opset"):
        pyrnn.export_onnx(_layer("lstm"), tmp_path / "m.onnx", opset=opset)
    assert not (tmp_path / "m.onnx").exists()
    top = onnx.defs.onnx_opset_version()
    assert pyrnn.export_onnx(_layer("gru"), opset=np.int64(top)).opset_import[0].version == top


def test_numpy_int_sizes():
    # np.int64 passed the check, then failed inside onnx.helper ("Invalid item in shape").
    m = pyrnn.export_onnx(_layer("gru"), seq_len=np.int32(5), batch=np.int64(2))
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [5, 2, _layer("gru").input_size]


def test_path_kinds(tmp_path, monkeypatch):
    # A file object was turned into str() and written under that name in the working folder.
    import io
    monkeypatch.chdir(tmp_path)
    layer = _layer("lstm")
    buf = io.BytesIO()
    pyrnn.export_onnx(layer, buf)
    assert onnx.load_from_string(buf.getvalue()) == pyrnn.export_onnx(layer)
    pyrnn.export_onnx(layer, tmp_path / "a.onnx")
    pyrnn.export_onnx(layer, str(tmp_path / "b.onnx"))
    pyrnn.export_onnx(layer, os.fsencode(tmp_path / "c.onnx"))
    for name in "abc":
        assert onnx.load(str(tmp_path / f"{name}.onnx")) == onnx.load_from_string(buf.getvalue())
    for bad in (3, object()):
        with pytest.raises(TypeError, match="path must be a str, bytes, os.PathLike or a "
                                            "binary file object"):
            pyrnn.export_onnx(layer, bad)
    # As save() checks them (helper-173): "d.onnx/" wrote a file d.onnx, "" was "Is a
    # directory: ''", a text file a TypeError about bytes
    for bad in (f"{tmp_path}/d.onnx/", f"{tmp_path}/d.onnx/.", tmp_path):
        with pytest.raises(IsADirectoryError, match=r"export_onnx\(\) needs a file path"):
            pyrnn.export_onnx(layer, bad)
    with pytest.raises(FileNotFoundError, match="an empty path"):
        pyrnn.export_onnx(layer, "")
    with pytest.raises(TypeError, match=r"export_onnx\(\) needs a file opened in binary mode"):
        pyrnn.export_onnx(layer, io.StringIO())
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "b.onnx", "c.onnx"]


def test_export_writes_all_of_it_into_a_raw_stream():
    # One write() whose count was ignored: a raw stream taking 1000 bytes at a time got the
    # first 1000 of a 22 kB model, and no error.
    import io

    class Short(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            b = bytes(b)[:1000]
            self.data += b
            return len(b)

    layer = _layer("lstm")
    s = Short()
    proto = pyrnn.export_onnx(layer, s)
    assert bytes(s.data) == proto.SerializeToString()


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    # Written atomically, as pyrnn.save: a failure part-way leaves the old file whole.
    path = tmp_path / "m.onnx"
    pyrnn.export_onnx(_layer("lstm"), path)
    old = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        pyrnn.export_onnx(_layer("gru"), path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["m.onnx"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_model_without_sequence_layers_takes_samples_or_sequences(dtype):
    # Rank-keeping layers run on any rank in pyrnn: the graph takes (N, F) (ids (N,)) as it
    # did, and sequences (N, T, F) / (N, T) when seq_len asks for them (it was ignored).
    rng = np.random.default_rng(0)
    dense = pyrnn.Sequential([pyrnn.Dense(3, 4, activation="tanh", seed=0, dtype=dtype),
                              pyrnn.LayerNorm(4, dtype=dtype)]).eval()
    emb = pyrnn.Sequential([pyrnn.Embedding(5, 3, seed=0, dtype=dtype),
                            pyrnn.Dense(3, 2, seed=1, dtype=dtype)]).eval()
    run = _run_ort if dtype == "float32" else _run_ref
    for model, x2, x3 in ((dense, rng.standard_normal((4, 3)).astype(dtype),
                           rng.standard_normal((4, 6, 3)).astype(dtype)),
                          (emb, rng.integers(0, 5, 4), rng.integers(0, 5, (4, 6)))):
        for kw, x, dims in (({}, x2, ["batch"]), ({"seq_len": 6}, x3, ["batch", 6])):
            onx = pyrnn.export_onnx(model, **kw)
            got = [d.dim_param or d.dim_value for d in onx.graph.input[0].type.tensor_type.shape.dim]
            assert got[:len(dims)] == dims and len(got) == x.ndim
            _check(run(onx, {"X": x}), [model(x)], TOL[dtype])


def test_subclasses_are_refused():
    # A subclass was exported as its base: here the graph gave half of pyrnn's output.
    class ScaledDense(pyrnn.Dense):
        def forward(self, x):
            return 2.0 * super().forward(x)

    class MyLSTM(pyrnn.LSTM):
        pass

    class MySequential(pyrnn.Sequential):
        pass

    gru = pyrnn.GRU(3, 4, batch_first=True, seed=0)
    with pytest.raises(TypeError, match=r"layer 2 \(ScaledDense\) is a subclass of pyrnn.Dense"):
        pyrnn.export_onnx(pyrnn.Sequential([gru, pyrnn.LastStep(), ScaledDense(4, 2, seed=1)]))
    with pytest.raises(TypeError, match="MyLSTM is a subclass of pyrnn.LSTM"):
        pyrnn.export_onnx(MyLSTM(3, 4))
    with pytest.raises(TypeError, match="MySequential is a subclass of pyrnn.Sequential"):
        pyrnn.export_onnx(MySequential([pyrnn.Dense(3, 2)]))
    # Nested too (a nested model is dissolved into its layers before they are checked).
    with pytest.raises(TypeError, match="a nested MySequential is a subclass of pyrnn.Sequential"):
        pyrnn.export_onnx(pyrnn.Sequential([MySequential([pyrnn.Dense(3, 2)])]))


def test_layernorm_epsilon_is_exported():
    # eps=1.0 (far from the default 1e-5) changes the output visibly: the graph must match.
    rng = np.random.default_rng(0)
    model = pyrnn.Sequential([pyrnn.LayerNorm(4, eps=1.0, dtype="float64")]).eval()
    x = rng.standard_normal((3, 4))
    _check(_run_ref(pyrnn.export_onnx(model), {"X": x}), [model(x)], TOL["float64"])


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_float64_layernorm_keeps_float64_precision(opset):
    # LayerNormalization's epsilon is a 32-bit float attribute (0.3 became 0.30000001192...):
    # float64 graphs build the formula with a float64 eps, any opset from 13, and agree with
    # pyrnn to rounding, however small the variance (where eps weighs most).
    rng = np.random.default_rng(1)
    model = pyrnn.Sequential([pyrnn.LayerNorm(6, eps=0.3, dtype="float64"),
                              pyrnn.LayerNorm(6, dtype="float64")]).eval()
    for p in model.parameters():
        p.data[...] = rng.uniform(-2, 2, p.data.shape)
    x = 1.0 + 1e-3 * rng.standard_normal((5, 6))
    onx = pyrnn.export_onnx(model, opset=opset)
    assert "LayerNormalization" not in [n.op_type for n in onx.graph.node]
    tight = dict(rtol=1e-13, atol=1e-13)
    _check(_run_ref(onx, {"X": x}), [model(x)], tight)
    _check(_run_ort(onx, {"X": x}), [model(x)], tight)
    with pytest.raises(ValueError, match="opset >= 17"):  # float32 still needs the node
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.LayerNorm(6)]), opset=16)


def test_lengths_need_a_sequence_layer():
    with pytest.raises(ValueError, match="lengths=True needs a recurrent layer or LastStep"):
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Dense(2, 1)]), lengths=True)


@pytest.mark.parametrize("flag", ["lengths", "initial_states", "check"])
def test_flags_must_be_booleans(flag):
    # A truthy non-bool ("no", 0.0 is falsy, "False") was taken at its truth value.
    gru = pyrnn.GRU(3, 4, seed=0)
    for bad in ("no", "False", 1, None):
        with pytest.raises(TypeError, match=f"{flag} must be True or False"):
            pyrnn.export_onnx(gru, **{flag: bad})
    pyrnn.export_onnx(gru, **{flag: np.bool_(False)})


def test_a_model_without_a_fixed_input_width_says_why():
    # (a Dropout-only model was "a Sequential starting with NoneType")
    with pytest.raises(TypeError, match="with only Dropout layers: it must start with a layer "
                                        "of fixed input width"):
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Dropout(0.1)]))
    with pytest.raises(TypeError, match="its first layer after any Dropout a LastStep"):
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Dropout(0.1), pyrnn.LastStep(),
                                            pyrnn.Dense(3, 1)]))


def test_a_duck_typed_layer_is_refused_by_name():
    # Sequential takes any object with the layer methods; export read its missing .dtype first
    # (AttributeError) instead of its TypeError for unsupported layers.
    from duck_layer import ScaleLayer
    with pytest.raises(TypeError, match=r"does not support layer 1 \(ScaleLayer\)"):
        pyrnn.export_onnx(pyrnn.Sequential([pyrnn.Dense(3, 2), ScaleLayer(2.0)]))
    with pytest.raises(TypeError, match="cannot infer the input width"):
        pyrnn.export_onnx(pyrnn.Sequential([ScaleLayer(2.0), pyrnn.Dense(3, 2)]))


# ---- from a hunt (helper-173) ------------------------------------------------------------------

def test_embedding_ids_in_the_graph_as_pyrnn_reads_them():
    # Padding ids (past lengths) are read as 0 whatever they hold: the Gather failed on an
    # id >= num there. An id outside [0, num) within the lengths, which pyrnn refuses, gives
    # NaN rows: the Gather took -1 as the last row, silently.
    m = pyrnn.Sequential([pyrnn.Embedding(5, 2, seed=0),
                          pyrnn.LSTM(2, 3, batch_first=True, seed=0), pyrnn.LastStep()]).eval()
    onx = pyrnn.export_onnx(m, lengths=True)
    x = np.array([[1, 2, 0], [3, 5, -7]])
    lens = np.array([3, 1])
    _check(_run_ort(onx, {"X": x, "lengths": lens}), [m.predict(x, lengths=lens)], TOL["float32"])
    for fixed in ({"seq_len": 3}, {"batch": 2}, {"seq_len": 3, "batch": 2}):
        # (both axes fixed: the Range got [1]-shaped bounds, which onnxruntime refused to load;
        # helper-174)
        onx_fixed = pyrnn.export_onnx(m, lengths=True, **fixed)
        _check(_run_ort(onx_fixed, {"X": x, "lengths": lens}), [m.predict(x, lengths=lens)],
               TOL["float32"])
    m64 = pyrnn.Sequential([pyrnn.Embedding(5, 2, seed=0, dtype="float64"),
                            pyrnn.LayerNorm(2, dtype="float64")]).eval()
    _check(_run_ref(pyrnn.export_onnx(m64, seq_len=3, batch=2), {"X": np.array([[1, 2, 0],
                                                                                [3, 4, 4]])}),
           [m64.predict(np.array([[1, 2, 0], [3, 4, 4]]))], TOL["float64"])
    bad = np.array([[1, -1, 2], [3, 4, 0]])
    with pytest.raises(ValueError, match="Embedding index -1 is outside"):
        m.predict(bad, lengths=np.array([3, 3]))
    # (onnxruntime's LSTM does not carry NaN through: the embedding's own rows are checked)
    emb = pyrnn.Sequential(m.layers[:1]).eval()
    y = _run_ort(pyrnn.export_onnx(emb, seq_len=3, lengths=False), {"X": bad})[0]
    assert np.isnan(y[0, 1]).all() and np.isfinite(np.delete(y.reshape(-1, 2), 1, 0)).all()
    flat = pyrnn.Sequential([pyrnn.Embedding(5, 2, seed=0), pyrnn.Dense(2, 1, seed=0)]).eval()
    y = _run_ort(pyrnn.export_onnx(flat), {"X": np.array([1, 5, -1, 4])})[0]
    assert np.isnan(y[[1, 2]]).all() and np.isfinite(y[[0, 3]]).all()


def test_a_layernorm_eps_float32_cannot_hold_is_refused():
    # It was exported as 0 (a constant row NaN in the graph, 0 in pyrnn).
    m = pyrnn.Sequential([pyrnn.LayerNorm(4, eps=1e-50)]).eval()
    with pytest.raises(ValueError, match=r"LayerNorm eps=1e-50 is 0 as the 32-bit float"):
        pyrnn.export_onnx(m)
    pyrnn.export_onnx(pyrnn.Sequential([pyrnn.LayerNorm(4, eps=1e-50, dtype="float64")]))
    pyrnn.export_onnx(pyrnn.Sequential([pyrnn.LayerNorm(4, eps=1e-40)]))  # (a subnormal: kept)


def test_a_layer_class_in_the_layers_is_named():
    # Its `device` descriptor was taken for a device ("layers on different devices"), and
    # to()'s rollback cleared the class's __dict__ (an AttributeError).
    m = pyrnn.Sequential([pyrnn.LSTM(3, 4, batch_first=True)])
    m.layers.append(pyrnn.Dense)
    for call in (lambda: pyrnn.export_onnx(m), lambda: m.device, lambda: m.to("cpu")):
        with pytest.raises(TypeError, match="layer 1 is the class Dense, not a layer"):
            call()
    assert "forward" in pyrnn.Dense.__dict__
