"""pyrnn against the ONNX RNN / GRU / LSTM operator definitions.

1. The ``onnx`` package's own backend node test cases (test_lstm_*, test_gru_*,
   test_rnn_* / test_simple_rnn_*): read from the installed data directories
   (onnx/backend/test/data/node/<case>/model.onnx + test_data_set_0/*.pb) when the wheel
   ships them, otherwise regenerated in memory from onnx.backend.test.case.node.{lstm,gru,rnn}
   (the code that writes those directories; same models, same expected outputs).
2. Random-weight cases: ONNX-convention weights drawn at random, the expected output from a
   small NumPy transcription of the operator definitions below (itself checked against
   onnx.reference.ReferenceEvaluator where that evaluator implements the attributes), then
   compared with pyrnn after mapping the weights. Constant weights (as in most of the
   official cases) would hide a wrong gate order; these do not.

Mapping ONNX -> pyrnn (per direction):
  W [D, G*H, C] -> weight_ih, R [D, G*H, H] -> weight_hh, gate blocks reordered:
    LSTM ONNX (i, o, f, c) -> pyrnn (i, f, g, o);  GRU ONNX (z, r, h) -> pyrnn (r, z, n).
  B [D, 2*G*H] = [Wb, Rb] -> bias = Wb + Rb (reordered), except GRU linear_before_reset=1
    (-> reset_after=True): bias_n = Wb_h and bias_hn = Rb_h.
  GRU linear_before_reset=0: the ONNX definition is
    ht = g(Xt*(Wh^T) + (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)
  i.e. Rbh is added outside the reset gate, so bias_n = Wbh + Rbh is exact (checked below
  against the schema text, so a changed definition is noticed rather than assumed).
  direction="reverse" -> the reverse half of a bidirectional pyrnn layer (its forward half
  gets random weights and is ignored).
  layout=1 (batch-major: X [N, T, C], Y [N, T, D, H], Y_h [N, D, H]) -> batch_first.
  sequence_lens -> lengths. ONNX leaves the padded region loosely specified; the
  transcription follows onnxruntime (= PyTorch packed sequences): Y is zero past each
  sequence's end, Y_h / Y_c hold the state after its last valid step, and the reverse
  direction starts at each sequence's own last valid step.
"""
import glob
import itertools
import os
import zlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

import pyrnn  # noqa: E402

LSTM_ORDER = [0, 2, 3, 1]  # pyrnn gate j takes ONNX gate LSTM_ORDER[j]: i<-i, f<-f, g<-c, o<-o
GRU_ORDER = [1, 0, 2]      # r<-r, z<-z, n<-h
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULT_ACTS = {"RNN": [["tanh"], ["relu"]], "GRU": [["sigmoid", "tanh"]],
                "LSTM": [["sigmoid", "tanh", "tanh"]]}


# ---- the ONNX operators, transcribed (float64) ---------------------------------------------
def _sig(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def onnx_recurrent(op, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None,
                   direction="forward", layout=0, linear_before_reset=0, activation="tanh"):
    """Y, Y_h (, Y_c) per the ONNX RNN/GRU/LSTM operator definitions (onnx.ai/onnx/operators).

    RNN : Ht = f(Xt*(Wi^T) + Ht-1*(Ri^T) + Wbi + Rbi), f = tanh (or relu via activations)
    GRU : zt = s(Xt*Wz^T + Ht-1*Rz^T + Wbz + Rbz); rt = s(Xt*Wr^T + Ht-1*Rr^T + Wbr + Rbr)
          lbr=0: ht = tanh(Xt*Wh^T + (rt.Ht-1)*Rh^T + Rbh + Wbh)
          lbr=1: ht = tanh(Xt*Wh^T + rt.(Ht-1*Rh^T + Rbh) + Wbh)
          Ht = (1 - zt).ht + zt.Ht-1
    LSTM: it = s(Xt*Wi^T + Ht-1*Ri^T + Wbi + Rbi); ft, ot likewise; ct = tanh(...)
          Ct = ft.Ct-1 + it.ct; Ht = ot.tanh(Ct)     (no peepholes)
    Gate blocks in W, R, B: RNN (i); GRU (z, r, h); LSTM (i, o, f, c).
    """
    X = np.asarray(X, np.float64)
    if layout == 1:
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    T, N, _ = X.shape
    D, GH, _ = W.shape
    H = GH // GATES[op]
    B = np.zeros((D, 2 * GH)) if B is None else np.asarray(B, np.float64)
    h_init = np.zeros((D, N, H)) if initial_h is None else np.asarray(initial_h, np.float64)
    c_init = np.zeros((D, N, H)) if initial_c is None else np.asarray(initial_c, np.float64)
    lens = np.full(N, T) if sequence_lens is None else np.asarray(sequence_lens)
    act = np.tanh if activation == "tanh" else (lambda v: np.maximum(v, 0.0))
    Y = np.zeros((T, D, N, H))
    Y_h = np.zeros((D, N, H))
    Y_c = np.zeros((D, N, H))
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        Wd, Rd = np.asarray(W[d], np.float64), np.asarray(R[d], np.float64)
        Wb, Rb = B[d, :GH], B[d, GH:]
        Ht, Ct = h_init[d].copy(), c_init[d].copy()
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            x = X[t]
            valid = (t < lens)[:, None]
            if op == "RNN":
                Hn = act(x @ Wd.T + Ht @ Rd.T + Wb + Rb)
                Cn = Ct
            elif op == "GRU":
                Wz, Wr, Wh = np.split(Wd, 3)
                Rz, Rr, Rh = np.split(Rd, 3)
                Wbz, Wbr, Wbh = np.split(Wb, 3)
                Rbz, Rbr, Rbh = np.split(Rb, 3)
                z = _sig(x @ Wz.T + Ht @ Rz.T + Wbz + Rbz)
                r = _sig(x @ Wr.T + Ht @ Rr.T + Wbr + Rbr)
                if linear_before_reset:
                    h = np.tanh(x @ Wh.T + r * (Ht @ Rh.T + Rbh) + Wbh)
                else:
                    h = np.tanh(x @ Wh.T + (r * Ht) @ Rh.T + Rbh + Wbh)
                Hn = (1 - z) * h + z * Ht
                Cn = Ct
            else:
                g = x @ Wd.T + Ht @ Rd.T + Wb + Rb
                gi, go, gf, gc = np.split(g, 4, axis=-1)
                Cn = _sig(gf) * Ct + _sig(gi) * np.tanh(gc)
                Hn = _sig(go) * np.tanh(Cn)
            Ht = np.where(valid, Hn, Ht)
            Ct = np.where(valid, Cn, Ct)
            Y[t, d] = np.where(valid, Hn, 0.0)
        Y_h[d], Y_c[d] = Ht, Ct
    if layout == 1:
        Y = Y.transpose(2, 0, 1, 3)
        Y_h = Y_h.transpose(1, 0, 2)
        Y_c = Y_c.transpose(1, 0, 2)
    return (Y, Y_h, Y_c) if op == "LSTM" else (Y, Y_h)


# ---- ONNX -> pyrnn ------------------------------------------------------------------------
def _reorder(a, op, H, axis=0):
    order = {"LSTM": LSTM_ORDER, "GRU": GRU_ORDER, "RNN": [0]}[op]
    blocks = np.split(np.asarray(a, np.float64), GATES[op], axis=axis)
    return np.concatenate([blocks[j] for j in order], axis=axis)


def run_pyrnn(op, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None,
              direction="forward", layout=0, linear_before_reset=0, activation="tanh",
              dtype="float64"):
    """Map ONNX inputs onto a pyrnn layer, run it, return outputs in ONNX layouts."""
    D_onnx, GH, C = W.shape
    G = GATES[op]
    H = GH // G
    bidir = direction != "forward"  # reverse -> reverse half of a bidirectional layer
    kw = dict(bidirectional=bidir, batch_first=(layout == 1), dtype=dtype, seed=0)
    if op == "RNN":
        layer = pyrnn.RNN(C, H, nonlinearity=activation, **kw)
    elif op == "GRU":
        layer = pyrnn.GRU(C, H, reset_after=bool(linear_before_reset), **kw)
    else:
        layer = pyrnn.LSTM(C, H, **kw)
    B = np.zeros((D_onnx, 2 * GH)) if B is None else np.asarray(B, np.float64)
    dirs = [1] if direction == "reverse" else list(range(D_onnx))
    for od, pd in zip(range(D_onnx), dirs):
        sfx = "_l0" + ("_reverse" if pd else "")
        layer.params["weight_ih" + sfx][...] = _reorder(W[od], op, H)
        layer.params["weight_hh" + sfx][...] = _reorder(R[od], op, H)
        Wb, Rb = B[od, :GH], B[od, GH:]
        if op == "GRU" and linear_before_reset:
            layer.params["bias" + sfx][...] = _reorder(
                np.concatenate([Wb[:2 * H] + Rb[:2 * H], Wb[2 * H:]]), op, H)
            layer.params["bias_hn" + sfx][...] = Rb[2 * H:]
        else:
            layer.params["bias" + sfx][...] = _reorder(Wb + Rb, op, H)
    X = np.asarray(X)
    N = X.shape[0] if layout == 1 else X.shape[1]
    L_D = 2 if bidir else 1

    def state(s):
        if s is None:
            return None
        s = np.asarray(s, np.float64)
        if layout == 1:
            s = s.transpose(1, 0, 2)
        if direction == "reverse":
            s = np.concatenate([np.zeros((1, N, H)), s])
        assert s.shape == (L_D, N, H)
        return s

    h0, c0 = state(initial_h), state(initial_c)
    if op == "LSTM":
        hx = None if h0 is None and c0 is None else (
            np.zeros((L_D, N, H)) if h0 is None else h0,
            np.zeros((L_D, N, H)) if c0 is None else c0)
    else:
        hx = h0
    res = layer(X, hx, None if sequence_lens is None else np.asarray(sequence_lens))
    out, (h_n, c_n) = res if op == "LSTM" else (res[0], (res[1], None))
    # pyrnn out: (T, N, L_D*H) or (N, T, L_D*H) -> ONNX Y
    if layout == 0:
        T = out.shape[0]
        Y = out.reshape(T, N, L_D, H).transpose(0, 2, 1, 3)
    else:
        T = out.shape[1]
        Y = out.reshape(N, T, L_D, H)
    sel = slice(1, 2) if direction == "reverse" else slice(None)
    Y = Y[:, sel] if layout == 0 else Y[:, :, sel]

    def st(s):
        s = s[sel]
        return s.transpose(1, 0, 2) if layout == 1 else s

    outs = [Y, st(h_n)]
    if op == "LSTM":
        outs.append(st(c_n))
    return [np.asarray(o) for o in outs]


# ---- the onnx package's node test cases ----------------------------------------------------
def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _load_data_dir_cases(root):
    cases = []
    for d in sorted(glob.glob(os.path.join(root, "test_*"))):
        base = os.path.basename(d)
        if not any(base.startswith(p) for p in ("test_lstm", "test_gru", "test_rnn",
                                                "test_simple_rnn")):
            continue
        model = onnx.load(os.path.join(d, "model.onnx"))
        ds = os.path.join(d, "test_data_set_0")
        if not os.path.isdir(ds):
            continue

        def read(pattern):
            arrs = []
            for f in sorted(glob.glob(os.path.join(ds, pattern)),
                            key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
                t = onnx.TensorProto()
                with open(f, "rb") as fh:
                    t.ParseFromString(fh.read())
                # to_array may return a read-only view of the protobuf's bytes; copy it so
                # these cases test the numerics (read-only inputs have their own test in
                # test_reference_gradcheck.py)
                arrs.append(np.array(numpy_helper.to_array(t)))
            return arrs
        cases.append((base, model, read("input_*.pb"), read("output_*.pb")))
    return cases


def _generated_cases():
    import onnx.backend.test.case.node as node_cases
    import onnx.backend.test.case.node.gru  # noqa: F401  (importing runs the exporters)
    import onnx.backend.test.case.node.lstm  # noqa: F401
    import onnx.backend.test.case.node.rnn  # noqa: F401
    cases, seen = [], set()
    for c in node_cases._NodeTestCases:
        op = c.model.graph.node[0].op_type
        if op in GATES and c.name not in seen:
            seen.add(c.name)
            inputs, outputs = c.data_sets[0]
            cases.append((c.name, c.model, list(inputs), list(outputs)))
    return cases


def collect_onnx_cases():
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    cases = _load_data_dir_cases(root) if os.path.isdir(root) else []
    if not cases:
        cases = _generated_cases()
    return sorted(cases, key=lambda c: c[0])


ONNX_CASES = collect_onnx_cases()


def unsupported_reason(op, attrs, named):
    if "clip" in attrs:
        return "clip attribute: pyrnn has no cell clipping"
    if attrs.get("input_forget", 0):
        return "input_forget=1 (coupled gates): not a pyrnn cell"
    if "activation_alpha" in attrs or "activation_beta" in attrs:
        return "parametrised activations: not supported by pyrnn"
    acts = attrs.get("activations")
    if acts is not None:
        acts = [a.decode().lower() if isinstance(a, bytes) else a.lower() for a in acts]
        D = 2 if attrs.get("direction", b"forward") in (b"bidirectional", "bidirectional") else 1
        per = len(acts) // D
        if any(acts[k * per:(k + 1) * per] != acts[:per] for k in range(D)) or \
                acts[:per] not in DEFAULT_ACTS[op]:
            return f"activations {acts}: pyrnn supports {DEFAULT_ACTS[op]}"
    P = named.get("P")
    if P is not None and np.any(P):
        return "nonzero peepholes P: pyrnn's LSTM has none"
    return None


def test_onnx_cases_were_found():
    names = {c[0] for c in ONNX_CASES}
    assert any(n.startswith("test_lstm") for n in names), names
    assert any(n.startswith("test_gru") for n in names), names
    assert any("rnn" in n for n in names), names


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_onnx_backend_case(case, dtype):
    name, model, inputs, outputs = case
    node = model.graph.node[0]
    op = node.op_type
    attrs = _attrs(node)
    given = [n for n in node.input if n]
    assert len(given) == len(inputs), (list(node.input), len(inputs))
    # inputs are listed in node.input order, skipping empty (absent) optional inputs
    slots = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    named = {}
    it = iter(inputs)
    for slot, n in zip(slots, node.input):
        if n:
            named[slot] = next(it)
    reason = unsupported_reason(op, attrs, named)
    if reason:
        pytest.skip(reason)
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    acts = attrs.get("activations")
    activation = "tanh"
    if op == "RNN" and acts is not None:
        a0 = acts[0].decode() if isinstance(acts[0], bytes) else acts[0]
        activation = a0.lower()
    got = run_pyrnn(op, named["X"], named["W"], named["R"], named.get("B"),
                    named.get("sequence_lens"), named.get("initial_h"), named.get("initial_c"),
                    direction=direction, layout=attrs.get("layout", 0),
                    linear_before_reset=attrs.get("linear_before_reset", 0),
                    activation=activation, dtype=dtype)
    got_by_name = dict(zip(["Y", "Y_h", "Y_c"], got))
    slots_out = ["Y", "Y_h", "Y_c"]
    expected = iter(outputs)
    compared = 0
    for slot, n in zip(slots_out, node.output):
        if not n:
            continue
        want = next(expected)
        g = got_by_name[slot]
        assert g.shape == want.shape, f"{name} {slot}: shape {g.shape} != {want.shape}"
        # expected values were computed by onnx's NumPy helpers in float32
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {slot}")
        compared += 1
    assert compared == len(outputs)


def test_gru_linear_before_reset_0_definition():
    """Rbh sits outside the reset gate when linear_before_reset=0 (so bias_n = Wbh + Rbh)."""
    doc = onnx.defs.get_schema("GRU").doc.replace(" ", "")
    assert "ht=g(Xt*(Wh^T)+(rt(.)Ht-1)*(Rh^T)+Rbh+Wbh)#default" in doc
    assert "ht=g(Xt*(Wh^T)+(rt(.)(Ht-1*(Rh^T)+Rbh))+Wbh)#whenlinear_before_reset!=0" in doc


# ---- random-weight cases -------------------------------------------------------------------
OPS = [("RNN", 0, "tanh"), ("RNN", 0, "relu"), ("GRU", 0, "tanh"), ("GRU", 1, "tanh"),
       ("LSTM", 0, "tanh")]
RANDOM_CASES = list(itertools.product(OPS, ["forward", "reverse", "bidirectional"], [0, 1],
                                      [False, True]))


def rcid(c):
    (op, lbr, act), direction, layout, extras = c
    return f"{op}{'-lbr' if lbr else ''}-{act}-{direction}-layout{layout}-" \
           f"{'lens+init' if extras else 'plain'}"


def random_onnx_inputs(op, direction, layout, extras, rng, T=5, N=3, C=3, H=4):
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    inp = dict(
        X=rng.standard_normal((N, T, C) if layout else (T, N, C)),
        W=rng.uniform(-0.7, 0.7, (D, G * H, C)),
        R=rng.uniform(-0.7, 0.7, (D, G * H, H)),
        B=rng.uniform(-0.5, 0.5, (D, 2 * G * H)),
    )
    if extras:
        inp["sequence_lens"] = np.array([T - 2, T, 1][:N], dtype=np.int32)
        sshape = (N, D, H) if layout else (D, N, H)
        inp["initial_h"] = rng.standard_normal(sshape)
        if op == "LSTM":
            inp["initial_c"] = rng.standard_normal(sshape)
    return inp


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", RANDOM_CASES, ids=rcid)
def test_random_weights_vs_onnx_definition(case, dtype):
    (op, lbr, act), direction, layout, extras = case
    rng = np.random.default_rng(zlib.crc32(rcid(case).encode()))
    inp = random_onnx_inputs(op, direction, layout, extras, rng)
    if dtype == "float32":  # give both sides the same (float32-representable) values
        inp = {k: (v.astype(np.float32).astype(np.float64) if v.dtype.kind == "f" else v)
               for k, v in inp.items()}
    want = onnx_recurrent(op, direction=direction, layout=layout, linear_before_reset=lbr,
                          activation=act, **inp)
    got = run_pyrnn(op, direction=direction, layout=layout, linear_before_reset=lbr,
                    activation=act, dtype=dtype, **inp)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for slot, g, w in zip(["Y", "Y_h", "Y_c"], got, want):
        assert g.shape == w.shape, f"{slot}: shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, err_msg=slot, **tol)


# ---- the transcription itself against onnx's own evaluator ---------------------------------
@pytest.mark.parametrize("op,lbr", [("RNN", 0), ("GRU", 0), ("GRU", 1), ("LSTM", 0)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_transcription_matches_onnx_reference_evaluator(op, lbr, direction, layout):
    """onnx.reference implements these ops except sequence_lens and non-default activations,
    so the comparison is restricted to those."""
    ref = pytest.importorskip("onnx.reference")
    rng = np.random.default_rng(zlib.crc32(f"{op}{lbr}{direction}{layout}".encode()))
    inp = random_onnx_inputs(op, direction, layout, False, rng)
    D, GH = inp["W"].shape[:2]
    H = GH // GATES[op]
    N = inp["X"].shape[0] if layout else inp["X"].shape[1]
    sshape = (N, D, H) if layout else (D, N, H)
    inp["initial_h"] = rng.standard_normal(sshape)
    names = ["X", "W", "R", "B", "", "initial_h"]
    if op == "LSTM":
        inp["initial_c"] = rng.standard_normal(sshape)
        names.append("initial_c")
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = dict(hidden_size=H, direction=direction, layout=layout)
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    node = helper.make_node(op, names, outs, **attrs)
    dt = onnx.TensorProto.DOUBLE
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, dt, None) for n in names if n],
        [helper.make_tensor_value_info(n, dt, None) for n in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    try:
        res = ref.ReferenceEvaluator(model).run(None, {n: inp[n] for n in names if n})
    except Exception as e:  # pragma: no cover - evaluator gaps are not pyrnn's problem
        pytest.skip(f"onnx.reference cannot run this case: {e}")
    want = onnx_recurrent(op, direction=direction, layout=layout, linear_before_reset=lbr,
                          **inp)
    for slot, r, w in zip(outs, res, want):
        np.testing.assert_allclose(r, w, rtol=1e-12, atol=1e-12, err_msg=slot)
