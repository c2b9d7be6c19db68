"""model.save / pyrnn.load: round trips of every layer kind, and refusal of truncated,
corrupted, foreign, wrong-version and lying files (a ValueError, never a crash, a partly
loaded model or an allocation sized by the file's claims)."""
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest

import pyrnn
from pyrnn import serialize


def full_model():
    return pyrnn.Sequential([
        pyrnn.Embedding(12, 4, padding_idx=0, seed=0),
        pyrnn.GRU(4, 5, num_layers=2, batch_first=True, bidirectional=True, reset_after=True,
                  dropout=0.25, seed=1),
        pyrnn.LayerNorm(10, eps=1e-3),
        pyrnn.Dropout(0.1),
        pyrnn.LastStep(),
        pyrnn.Dense(10, 6, activation="relu", seed=2),
        pyrnn.Dense(6, 3, bias=False, dtype="float64", seed=3),
    ])


def perturb(model, seed=9):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] += rng.standard_normal(p.shape).astype(p.dtype) * 0.1


def test_round_trip_full_model(tmp_path):
    model = full_model()
    perturb(model)  # LayerNorm weights off their init values, so they must come from the file
    path = tmp_path / "model.pyrnn"
    model.save(path)
    loaded = pyrnn.load(path)
    assert type(loaded) is pyrnn.Sequential
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert loaded.config() == model.config()
    for (n1, a), (n2, b) in zip(model.params.items(), loaded.params.items()):
        assert n1 == n2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 12, (3, 7))
    lengths = np.array([7, 2, 5])
    np.testing.assert_array_equal(model.predict(x, lengths=lengths),
                                  loaded.predict(x, lengths=lengths))
    with loaded._linked():  # the direction count a pass through the model gives it
        assert loaded.layers[4].num_directions == 2
    assert [f for f in os.listdir(tmp_path)] == ["model.pyrnn"]  # no temp file left


@pytest.mark.parametrize("layer", [
    lambda: pyrnn.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0),
    lambda: pyrnn.GRU(3, 4, dtype="float64", seed=0),
    lambda: pyrnn.RNN(3, 4, nonlinearity="relu", bias=False, batch_first=True, seed=0),
    lambda: pyrnn.Dense(3, 2, activation="sigmoid"),
    lambda: pyrnn.LayerNorm(3),
    lambda: pyrnn.Embedding(5, 2),
], ids=["lstm", "gru64", "rnn_relu", "dense", "layernorm", "embedding"])
def test_round_trip_single_layer(tmp_path, layer):
    obj = layer()
    perturb(obj)
    path = str(tmp_path / "layer.bin")
    obj.save(path)
    back = pyrnn.load(path)
    assert type(back) is type(obj) and back.config() == obj.config()
    for k in obj.params:
        np.testing.assert_array_equal(back.params[k], obj.params[k])
    if isinstance(obj, (pyrnn.LSTM, pyrnn.GRU, pyrnn.RNN)):
        x = np.random.default_rng(0).standard_normal((2, 3, 3))
        np.testing.assert_array_equal(obj(x)[0], back(x)[0])


def test_save_overwrites_atomically_and_keeps_mode(tmp_path):
    path = tmp_path / "m.pyrnn"
    a, b = pyrnn.Dense(2, 2, seed=0), pyrnn.Dense(2, 2, seed=1)
    a.save(path)
    os.chmod(path, 0o640)
    b.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    np.testing.assert_array_equal(pyrnn.load(path).params["weight"], b.params["weight"])
    assert os.listdir(tmp_path) == ["m.pyrnn"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX hard links and owners")
def test_save_over_a_file_keeps_its_hard_links_and_owner(tmp_path):
    # The rename replaced the file: another hard link kept the old model, and an owner or group
    # became the saver's (a shared checkpoint others could no longer overwrite), where
    # open("wb") and torch.save keep both (helper-197).
    a, b = pyrnn.Dense(2, 2, seed=0), pyrnn.Dense(2, 2, seed=1)
    path, twin = tmp_path / "m.pyrnn", tmp_path / "twin.pyrnn"
    a.save(path)
    os.link(path, twin)
    inode = os.stat(path).st_ino
    b.save(path)
    assert os.stat(path).st_ino == inode
    np.testing.assert_array_equal(pyrnn.load(twin).params["weight"], b.params["weight"])
    os.unlink(twin)
    if os.geteuid() == 0:  # (only root may give a file away)
        os.chown(path, 65534, 65534)
        a.save(path)
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (65534, 65534)
        np.testing.assert_array_equal(pyrnn.load(path).params["weight"], a.params["weight"])
    assert sorted(os.listdir(tmp_path)) == ["m.pyrnn"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o077, 0o002, 0o022])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask):
    # 0644 whatever the umask before: readable by others under umask 077.
    old = os.umask(umask)
    try:
        pyrnn.Dense(2, 2, seed=0).save(tmp_path / "m.pyrnn")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "m.pyrnn").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_file_is_private_while_it_is_written(tmp_path):
    # Created with open()'s mode (0644 under umask 022), it could be opened by others while
    # the model was written, and read after a chmod to the target's 0600.
    (tmp_path / "f").write_bytes(b"old")
    os.chmod(tmp_path / "f", 0o600)
    seen = []

    def chunks():
        tmp = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        seen.extend(os.stat(tmp_path / n).st_mode & 0o777 for n in tmp)
        yield b"new"

    serialize._atomic_write(tmp_path / "f", chunks())
    assert seen == [0o600]
    assert (tmp_path / "f").read_bytes() == b"new" and os.stat(tmp_path / "f").st_mode & 0o777 == 0o600


def test_save_to_a_long_file_name(tmp_path):
    # The temporary file's name was derived from the target's, past NAME_MAX (255) for a
    # 250-character name that open() takes.
    path = tmp_path / ("m" * 244 + ".pyrnn")
    pyrnn.Dense(2, 2, seed=0).save(path)
    assert pyrnn.load(path).params["weight"].shape == (2, 2)
    assert os.listdir(tmp_path) == [path.name]


def test_save_through_a_symlink_writes_its_target(tmp_path):
    # As open(path, "w") would: the link stays, its target gets the new model.
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "m.pyrnn", tmp_path / "link.pyrnn"
    pyrnn.Dense(2, 2, seed=0).save(target)
    link.symlink_to(target)
    b = pyrnn.Dense(2, 2, seed=1)
    b.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(pyrnn.load(target).params["weight"], b.params["weight"])
    assert sorted(os.listdir(tmp_path / "real")) == ["m.pyrnn"]


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pyrnn"
    pyrnn.Dense(2, 2, seed=0).save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        pyrnn.Dense(2, 2, seed=1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pyrnn"]


def test_save_rejects_foreign_objects(tmp_path):
    class Mine(pyrnn.layers.Layer):
        def config(self):
            return {}
    with pytest.raises(TypeError, match="cannot save"):
        pyrnn.save(Mine(), tmp_path / "x")


def test_save_writes_only_what_load_can_read(tmp_path):
    # Both once wrote a file that load() then refused: the model was lost.
    class MyDense(pyrnn.Dense):
        pass
    nested = pyrnn.Sequential([pyrnn.Dense(3, 3), pyrnn.Sequential([MyDense(3, 3)])])
    with pytest.raises(TypeError, match="cannot save a MyDense"):
        nested.save(tmp_path / "nested.pyrnn")

    class NoConfig(pyrnn.layers.Layer):  # a custom layer need not have config()
        def forward(self, x):
            return x

        def backward(self, d):
            return d
    with pytest.raises(TypeError, match="cannot save a NoConfig"):
        pyrnn.Sequential([pyrnn.Sequential([NoConfig()])]).save(tmp_path / "n.pyrnn")
    d = pyrnn.Dense(3, 2)
    d.__dict__["_in_features"] = 5  # what a plain `d.in_features = 5` once did (now refused)
    with pytest.raises(ValueError, match=r"cannot save Dense: its parameters do not match what "
                       r"its config describes.*'weight'.*\(2, 3\).*\(2, 5\)"):
        d.save(tmp_path / "d.pyrnn")
    assert os.listdir(tmp_path) == []  # nothing written


def test_save_and_load_take_bytes_paths(tmp_path):
    model = full_model()
    path = os.fsencode(tmp_path / "m.pyrnn")
    model.save(path)
    back = pyrnn.load(path)
    for name, value in model.numpy_params().items():
        np.testing.assert_array_equal(back.numpy_params()[name], value)


# ---- damaged files ------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.pyrnn"
    full_model().save(path)
    return path, path.read_bytes()


def test_every_truncation_is_a_value_error(saved, tmp_path):
    path, data = saved
    cut = tmp_path / "cut.pyrnn"
    points = sorted(set(list(range(0, 64)) + list(range(64, len(data), max(1, len(data) // 97)))))
    for n in points:
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match="truncated|not a pyrnn|corrupted"):
            pyrnn.load(cut)


def test_flipped_bytes_are_detected(saved, tmp_path):
    path, data = saved
    bad = tmp_path / "bad.pyrnn"
    rng = np.random.default_rng(0)
    for pos in list(range(8, 40)) + list(rng.integers(40, len(data), 60)):
        b = bytearray(data)
        b[pos] ^= 0x5A
        bad.write_bytes(bytes(b))
        with pytest.raises(ValueError):
            pyrnn.load(bad)


def test_foreign_and_empty_files(tmp_path):
    p = tmp_path / "f"
    for content in (b"", b"hello world, not a model", b"PK\x03\x04" + b"\0" * 100,
                    np.zeros(100).tobytes()):
        p.write_bytes(content)
        with pytest.raises(ValueError, match="not a pyrnn|truncated"):
            pyrnn.load(p)
    np.savez(tmp_path / "w.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a pyrnn"):
        pyrnn.load(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError):
        pyrnn.load(tmp_path / "missing")


def write_raw(path, header, payload=b"", version=1):
    """A file with valid checksums around an arbitrary header: the lies must be caught by
    the consistency checks, not by a CRC."""
    h = json.dumps(header).encode()
    prefix = struct.pack("<8sIIQQII", serialize.MAGIC, version, 0, len(h), len(payload),
                         zlib.crc32(h), zlib.crc32(payload))
    path.write_bytes(prefix + h + payload)


def header_of(data):
    hlen = struct.unpack_from("<Q", data, 16)[0]
    return json.loads(data[40:40 + hlen]), data[40 + hlen:]


def test_wrong_version(saved, tmp_path):
    _, data = saved
    header, payload = header_of(data)
    p = tmp_path / "v.pyrnn"
    write_raw(p, header, payload, version=2)
    with pytest.raises(ValueError, match="version 2"):
        pyrnn.load(p)
    header["format_version"] = 7
    write_raw(p, header, payload)
    with pytest.raises(ValueError, match="version"):
        pyrnn.load(p)


def test_lying_headers_never_allocate(saved, tmp_path):
    _, data = saved
    header, payload = header_of(data)
    p = tmp_path / "lie.pyrnn"

    def expect(h, match):
        write_raw(p, h, payload)
        with pytest.raises(ValueError, match=match):
            pyrnn.load(p)

    # A tensor claiming terabytes: checked against the real payload size.
    h = json.loads(json.dumps(header))
    h["tensors"][0]["shape"] = [2**40, 2**20]
    h["tensors"][0]["nbytes"] = 2**60 * 4
    expect(h, "truncated or corrupted")
    # A config declaring a huge layer: its parameter shapes do not match the file's tensors,
    # so nothing is built.
    h = json.loads(json.dumps(header))
    h["model"]["config"]["layers"][5]["config"]["in_features"] = 2**31 - 1
    expect(h, "is .* but the model's parameter is")
    h = json.loads(json.dumps(header))
    h["model"]["config"]["layers"][1]["config"]["num_layers"] = 10**12
    expect(h, "num_layers")
    # Inconsistent byte counts, unknown classes and dtypes, missing tensors, bad JSON shapes.
    h = json.loads(json.dumps(header))
    h["tensors"][1]["nbytes"] += 4
    expect(h, "declares")
    h = json.loads(json.dumps(header))
    h["model"]["config"]["layers"][0]["class"] = "os.system"
    expect(h, "unknown layer class")
    h = json.loads(json.dumps(header))
    h["tensors"][0]["dtype"] = "|O"
    expect(h, "unsupported dtype")
    h = json.loads(json.dumps(header))
    del h["tensors"][0]  # (the last one: the payload would outlast the tensors)
    expect(h, "missing")
    h = json.loads(json.dumps(header))
    h["tensors"][0]["shape"] = "many"
    expect(h, "shape")
    h = json.loads(json.dumps(header))
    h["model"]["config"]["layers"][5]["config"]["activation"] = "gelu"
    expect(h, "invalid model config")
    h = json.loads(json.dumps(header))
    h["model"] = {"class": "Sequential", "config": {"layers": "no"}}
    expect(h, "layers")
    write_raw(p, [1, 2, 3], payload)
    with pytest.raises(ValueError, match="not a pyrnn header"):
        pyrnn.load(p)
    # Deeply nested JSON.
    deep = b"[" * 100000 + b"]" * 100000
    prefix = struct.pack("<8sIIQQII", serialize.MAGIC, 1, 0, len(deep), 0, zlib.crc32(deep),
                         zlib.crc32(b""))
    p.write_bytes(prefix + deep)
    with pytest.raises(ValueError):
        pyrnn.load(p)


# ---- from a hunt: hostile headers that cost time or memory, and targets that are no files ----

def test_a_sequential_links_its_layers_once(monkeypatch):
    # Each add() linked the whole model again: a file of 20,000 LastSteps (0.6 MB) took 136 s
    # to load.
    calls = []
    real = pyrnn.Sequential._check_distinct
    monkeypatch.setattr(pyrnn.Sequential, "_check_distinct",
                        lambda self: calls.append(1) or real(self))
    pyrnn.Sequential([pyrnn.LastStep() for _ in range(200)])
    assert len(calls) == 1


def _header(spec, tensors):
    return {"format": "pyrnn", "format_version": 1, "pyrnn_version": "0", "model": spec,
            "tensors": tensors}


def test_empty_tensors_and_oversized_payloads_are_refused(tmp_path):
    p = tmp_path / "x.pyrnn"
    spec = {"class": "LastStep", "config": {}}
    write_raw(p, _header(spec, [{"name": "t", "dtype": "<f4", "shape": [0], "offset": 0,
                                 "nbytes": 0}]))
    with pytest.raises(ValueError, match="tensor 't' of shape \\(0,\\) is empty"):
        pyrnn.load(p)
    write_raw(p, _header(spec, []), payload=b"\0" * 64)
    with pytest.raises(ValueError, match="the tensors end at byte 0 of a 64-byte payload"):
        pyrnn.load(p)
    write_raw(p, _header({"class": "Sequential", "config": {"layers": [spec] * 100_001}}, []))
    with pytest.raises(ValueError, match="more than 100000 layers in the model"):
        pyrnn.load(p)


def test_the_layer_limit_counts_the_layers_inside(tmp_path, monkeypatch):
    # The model itself counted: a Sequential of exactly the limit was refused.
    p, q = tmp_path / "m.pyrnn", tmp_path / "n.pyrnn"
    pyrnn.Sequential([pyrnn.LastStep() for _ in range(9)] +
                     [pyrnn.Sequential([pyrnn.LastStep()])]).save(p)  # 11 with the nested one
    pyrnn.Sequential([pyrnn.LastStep() for _ in range(10)]).save(q)
    monkeypatch.setattr(serialize, "_MAX_LAYERS", 10)
    with pytest.raises(ValueError, match="more than 10 layers"):
        pyrnn.load(p)
    assert len(pyrnn.load(q).layers) == 10
    with pytest.raises(ValueError, match="save: more than 10 layers in the model, which load "
                                         "refuses"):
        pyrnn.Sequential([pyrnn.LastStep() for _ in range(11)]).save(p)


def test_a_null_dtype_is_read_as_the_constructor_reads_it(tmp_path):
    # dtype None builds a float32 layer, but the check read it as float64: a float64 tensor
    # then loaded into the float32 layer (1 + 1e-12 became 1.0).
    p = tmp_path / "d.pyrnn"
    pyrnn.Dense(2, 2, dtype="float64").save(p)
    header, payload = header_of(p.read_bytes())
    header["model"]["config"]["dtype"] = None
    write_raw(p, header, payload)
    with pytest.raises(ValueError, match="float64, but the model's parameter is .* float32"):
        pyrnn.load(p)


def test_a_padded_tensor_table_stays_cheap(tmp_path):
    # Free (empty) entries let an LSTM declare 100k layers: the shapes of all of them, and a
    # 14 MB error message listing every name, took 40x the file's size.
    import tracemalloc
    n = 20_000
    tensors = [{"name": f"t{i}", "dtype": "<f4", "shape": [1], "offset": 64 * i, "nbytes": 4}
               for i in range(n)]
    payload = b"\0" * (64 * (n - 1) + 4)
    p = tmp_path / "padded.pyrnn"
    for layers, match in ((n, "num_layers"), (n // 4, r"missing: \[.*\] and \d+ more")):
        spec = {"class": "LSTM", "config": {"input_size": 1, "hidden_size": 1,
                                            "num_layers": layers, "bidirectional": True}}
        write_raw(p, _header(spec, tensors), payload)
        size = p.stat().st_size
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=match) as e:
                pyrnn.load(p)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(str(e.value)) < 1000
        assert peak < 20 * size + (4 << 20), peak


def test_the_payload_is_read_only_after_the_header_checks(tmp_path):
    # A 40-byte prefix declaring a 1 GiB payload (a sparse file) and a garbage header: the
    # whole payload was read (its size in memory) before the header's checksum was checked.
    import tracemalloc
    p = tmp_path / "sparse.pyrnn"
    h = b"garbage header!!!"
    plen = 1 << 30
    with open(p, "wb") as f:
        f.write(struct.pack("<8sIIQQII", serialize.MAGIC, 1, 0, len(h), plen, 0, 0) + h)
        f.truncate(40 + len(h) + plen)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="header checksum mismatch"):
            pyrnn.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_save_writes_into_a_fifo(tmp_path):
    # The atomic rename replaced a FIFO (or, as root, a device such as /dev/null) with a
    # regular file; open() writes into it, and so does save now.
    import stat
    import threading
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())
    reader = threading.Thread(target=read)
    reader.start()
    layer = pyrnn.GRU(2, 3, seed=0)
    layer.save(fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]
    (tmp_path / "copy.pyrnn").write_bytes(got[0])
    loaded = pyrnn.load(tmp_path / "copy.pyrnn")
    for k, v in layer.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)


def test_dropout_keeps_its_seed_through_save_and_load(tmp_path):
    # Dropout's config left out its seed (Keras' get_config keeps it): a loaded model drew its
    # masks from fresh entropy, different in every process. Assigning .seed did nothing.
    x = np.ones((6, 50), np.float32)
    m = pyrnn.Sequential([pyrnn.Dense(50, 50, seed=0), pyrnn.Dropout(0.5, seed=7)])
    assert m.layers[1].config() == {"p": 0.5, "seed": 7}
    assert pyrnn.Dropout(0.25).config() == {"p": 0.25}
    m.save(tmp_path / "m.pyrnn")
    a, b = pyrnn.load(tmp_path / "m.pyrnn"), pyrnn.load(tmp_path / "m.pyrnn")
    assert a.layers[1].seed == 7
    a.train()
    b.train()
    fresh = pyrnn.Sequential([pyrnn.Dense(50, 50, seed=0), pyrnn.Dropout(0.5, seed=7)])
    fresh.train()
    first = a.forward(x)
    assert 0 < np.count_nonzero(first) < first.size  # masked
    np.testing.assert_array_equal(first, b.forward(x))
    np.testing.assert_array_equal(first, fresh.forward(x))  # masks restart from the seed
    np.testing.assert_array_equal(a.forward(x), fresh.forward(x))
    with pytest.raises(AttributeError, match="cannot set Dropout.seed"):
        a.layers[1].seed = 3


@pytest.mark.parametrize("key", ["seed", "foo", "device"])
def test_a_config_key_the_layer_does_not_save_is_refused(tmp_path, key):
    # Dense's weights come from the file (its seed is not saved), device must not move a model
    # onto a GPU, and an unknown key is a corrupted or foreign file: each a ValueError.
    p = tmp_path / "d.pyrnn"
    pyrnn.Dense(2, 1).save(p)
    header, payload = header_of(p.read_bytes())
    header["model"]["config"][key] = {"device": "cpu"}.get(key, 7)
    write_raw(p, header, payload)
    with pytest.raises(ValueError, match=rf"invalid Dense config: unexpected keys \['{key}'\]"):
        pyrnn.load(p)


def test_tensors_are_64_byte_aligned_in_the_payload(tmp_path):
    # The format (serialize's docstring): each tensor 64-byte aligned. Dense(3, 1)'s weight
    # is 12 bytes, so the later offsets need padding.
    p = tmp_path / "m.pyrnn"
    pyrnn.Sequential([pyrnn.Dense(3, 1), pyrnn.Dense(1, 1)]).save(p)
    header, _ = header_of(p.read_bytes())
    assert [t["offset"] for t in header["tensors"]] == [0, 64, 128, 192]


@pytest.mark.parametrize("make", [
    lambda: pyrnn.LastStep(True),
    lambda: pyrnn.Sequential([pyrnn.LastStep(True), pyrnn.Dense(8, 2, seed=1)]),
    lambda: pyrnn.Sequential([pyrnn.LSTM(3, 4, bidirectional=True, batch_first=True, seed=0),
                              pyrnn.LastStep(True), pyrnn.Dense(8, 2, seed=1)])[1:],
])
def test_a_bidirectional_laststep_saves_with_few_weights(tmp_path, make):
    # The file check's bound on a layer's num_layers * directions (by the weights in the file)
    # took LastStep's "bidirectional" for a recurrent layer's: "corrupted config: num_layers =
    # 1", refusing to save a model of fewer than 4 weight arrays (a classifier's head, say).
    obj = make()
    pyrnn.save(obj, tmp_path / "m.pyrnn")
    back = pyrnn.load(tmp_path / "m.pyrnn")
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    np.testing.assert_array_equal(back(x), obj(x))


# ---- from a hunt: streams, FIFOs and targets open() would refuse -----------------------------

class _ReadSpy(io.RawIOBase):
    """A raw binary stream over bytes that records the size of every read() asked of it."""

    def __init__(self, data):
        self._f, self.asked = io.BytesIO(data), []

    def readable(self):
        return True

    def readinto(self, b):
        self.asked.append(len(b))
        return self._f.readinto(b)


def test_a_stream_is_read_in_bounded_chunks(monkeypatch):
    # A header declaring a 16 TiB payload (an LSTM of hidden size 2**20), read from a file
    # object: f.read(declared size) was a MemoryError (or that much memory) before the
    # "truncated" ValueError a path gave.
    H = 2**20
    cfg = {"input_size": 1, "hidden_size": H, "num_layers": 1, "bias": True,
           "batch_first": False, "bidirectional": False, "dropout": 0.0, "dtype": "float32"}
    tensors, off = [], 0
    for k, s in pyrnn.LSTM.param_shapes(cfg).items():
        n = int(np.prod(s)) * 4
        tensors.append({"name": k, "dtype": "<f4", "shape": list(s), "offset": off,
                        "nbytes": n})
        off += n
    h = json.dumps({"format": "pyrnn", "format_version": 1,
                    "model": {"class": "LSTM", "config": cfg}, "tensors": tensors}).encode()
    data = struct.pack("<8sIIQQII", serialize.MAGIC, 1, 0, len(h), off, zlib.crc32(h), 0) + h
    f = _ReadSpy(data)
    with pytest.raises(ValueError, match="stream ended 0 bytes into a 17592219598848-byte"):
        pyrnn.load(io.BufferedReader(f))
    assert max(f.asked) <= serialize._STREAM_CHUNK
    # A real model read over many small chunks comes back bitwise.
    monkeypatch.setattr(serialize, "_STREAM_CHUNK", 100)
    layer = pyrnn.LSTM(3, 5, num_layers=2, seed=0)
    buf = io.BytesIO()
    layer.save(buf)
    f = _ReadSpy(buf.getvalue())
    loaded = pyrnn.load(f)
    assert len(f.asked) > 10 and max(f.asked) <= 100
    for k, v in layer.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)


def test_load_reads_a_fifo_path(tmp_path):
    # st_size is 0 for a FIFO (or /dev/stdin): load(path) called it truncated; it is read as a
    # stream now, as a file object over it was.
    import threading
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    layer = pyrnn.GRU(2, 3, seed=0)
    writer = threading.Thread(target=layer.save, args=(fifo,))
    writer.start()
    try:
        loaded = pyrnn.load(fifo)
    finally:
        writer.join(10)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    # Bytes after the model are refused, as for a regular file (a file object reads on).
    buf = io.BytesIO()
    layer.save(buf)

    def write_more():
        with open(fifo, "wb") as f:
            f.write(buf.getvalue() + b"x")
    writer = threading.Thread(target=write_more)
    writer.start()
    try:
        with pytest.raises(ValueError, match="data after the model's declared end"):
            pyrnn.load(fifo)
    finally:
        writer.join(10)


@pytest.mark.parametrize("cut", [0, 20, 40, 100])
def test_load_from_a_non_blocking_stream_without_data_is_named(cut):
    # read() giving None ("would block") was "gave NoneType ... binary mode", or a bare
    # "object of type 'NoneType' has no len()"; save() refused such a stream clearly already.
    buf = io.BytesIO()
    pyrnn.Dense(2, 2, seed=0).save(buf)
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        os.write(w, buf.getvalue()[:cut])
        with open(r, "rb", buffering=0, closefd=False) as f:
            with pytest.raises(OSError, match="non-blocking stream that would block"):
                pyrnn.load(f)
    finally:
        os.close(r)
        os.close(w)


def test_save_refuses_a_trailing_slash_as_open_does(tmp_path):
    # "m.pyrnn/" wrote (or overwrote) a file m.pyrnn; open() calls it a directory.
    for name in (f"{tmp_path}/m.pyrnn/", os.fsencode(f"{tmp_path}/m.pyrnn/"),
                 f"{tmp_path}/m.pyrnn/.", f"{tmp_path}/m.pyrnn/..", b"m.pyrnn/."):
        with pytest.raises(IsADirectoryError, match="Is a directory"):
            pyrnn.Dense(2, 2).save(name)
    assert os.listdir(tmp_path) == []


def test_save_does_not_replace_a_read_only_file(tmp_path):
    # The atomic rename replaced a 0444 file (a checkpoint the user protected); open(p, "wb")
    # and torch.save refuse it. Root bypasses file modes: run without that capability.
    import shutil
    import subprocess
    import sys
    p = tmp_path / "kept.pyrnn"
    p.write_bytes(b"precious")
    p.chmod(0o444)
    code = ("import sys, pyrnn\ntry:\n    pyrnn.Dense(2, 2).save(sys.argv[1])\n"
            "except PermissionError as e:\n    print('refused', e)\n")
    cmd = [sys.executable, "-c", code, str(p)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused") and str(p) in out.stdout, out.stdout
    assert p.read_bytes() == b"precious" and os.listdir(tmp_path) == ["kept.pyrnn"]


def test_laststep_bidirectional_is_checked_when_set(tmp_path):
    # A plain attribute: "yes" or 2 saved into a file load() refused, np.True_ was a JSON
    # TypeError in save().
    ls = pyrnn.LastStep()
    for bad in ("yes", 1, 2):
        with pytest.raises(TypeError, match="bidirectional must be True, False or None"):
            ls.bidirectional = bad
    assert ls.bidirectional is None
    ls.bidirectional = np.True_
    assert ls.bidirectional is True
    ls.save(tmp_path / "l.pyrnn")
    assert pyrnn.load(tmp_path / "l.pyrnn").bidirectional is True


# ---- from a hunt (helper-165, -167): paths written in place, and the temporary file's descriptor


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_save_to_this_process_descriptor_writes_through_it(tmp_path, name):
    # Into a pipe: the realpath of /dev/stdout was a pipe:[n] name that does not exist, so
    # save() looked for a folder there (FileNotFoundError, nothing written). Redirected to a
    # file: the rename replaced the file the shell opened, and what was printed after was lost.
    import subprocess
    import sys
    want = io.BytesIO()
    pyrnn.Dense(3, 3, seed=0).save(want)
    code = f"import pyrnn; pyrnn.Dense(3, 3, seed=0).save({name!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == want.getvalue()
    log = tmp_path / "out.bin"
    code = ("import sys, pyrnn; print('before'); "
            f"pyrnn.Dense(3, 3, seed=0).save({name!r}); print('after')")
    with open(log, "wb") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=tmp_path,
                       timeout=120)
    assert log.read_bytes() == b"before\n" + want.getvalue() + b"after\n"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


def test_an_export_to_a_pipe_writes_the_model(tmp_path):
    pytest.importorskip("onnx")
    import subprocess
    import sys
    code = "import pyrnn; pyrnn.export_onnx(pyrnn.GRU(2, 3, seed=0), '/dev/stdout', check=False)"
    # (from tmp_path: in the repository root, `import pyrnn` would find the source tree)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import onnx
    assert onnx.load_from_string(out.stdout).graph.node[0].op_type == "GRU"


def test_save_writes_a_writable_file_in_a_read_only_folder(tmp_path):
    # No temporary file can be made there, no rename done: it was a PermissionError naming
    # the (writable) file, where open(p, "wb") and torch.save write it. Root bypasses folder
    # modes: run without that capability.
    import shutil
    import subprocess
    import sys
    ro = tmp_path / "ro"
    ro.mkdir()
    p = ro / "m.pyrnn"
    p.write_bytes(b"old")
    p.chmod(0o666)
    ro.chmod(0o555)
    code = ("import sys, pyrnn\npyrnn.Dense(2, 2, seed=3).save(sys.argv[1])\n"
            "try:\n    pyrnn.Dense(2, 2).save(sys.argv[2])\n"
            "except PermissionError as e:\n    print('refused', e)\n")
    cmd = [sys.executable, "-c", code, str(p), str(ro / "new.pyrnn")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"] + cmd
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        # (a new file there cannot be made, as open() cannot: named by its path)
        assert out.stdout.startswith("refused") and "new.pyrnn" in out.stdout, out.stdout
        np.testing.assert_array_equal(pyrnn.load(p).params["weight"],
                                      pyrnn.Dense(2, 2, seed=3).params["weight"])
        assert sorted(os.listdir(ro)) == ["m.pyrnn"]
    finally:
        ro.chmod(0o755)


def test_save_writes_in_place_where_only_the_rename_is_refused(tmp_path, monkeypatch):
    # A sticky folder (/tmp) refuses renaming over another user's file that the caller may
    # write: written in place then, as open() would, and no temporary file left.
    p = tmp_path / "m.pyrnn"
    p.write_bytes(b"old")

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted", src)
    monkeypatch.setattr(os, "replace", refused)
    pyrnn.Dense(2, 2, seed=4).save(p)
    monkeypatch.undo()
    np.testing.assert_array_equal(pyrnn.load(p).params["weight"],
                                  pyrnn.Dense(2, 2, seed=4).params["weight"])
    assert os.listdir(tmp_path) == ["m.pyrnn"]
    # a file the caller may not write (os.access says so; root could anyway): the rename's
    # error stands, and the file is kept
    real_access = os.access
    monkeypatch.setattr(os, "replace", refused)
    monkeypatch.setattr(os, "access", lambda f, mode, **k: (
        False if os.fspath(f) == str(p) else real_access(f, mode, **k)))
    with pytest.raises(PermissionError, match="not permitted"):
        pyrnn.Dense(2, 2, seed=5).save(p)
    monkeypatch.undo()
    np.testing.assert_array_equal(pyrnn.load(p).params["weight"],
                                  pyrnn.Dense(2, 2, seed=4).params["weight"])
    assert os.listdir(tmp_path) == ["m.pyrnn"]


def test_an_interrupt_as_the_file_object_is_made_closes_the_descriptor_once(tmp_path,
                                                                            monkeypatch):
    # Ctrl-C landing after os.fdopen built its file object but before the assignment: the
    # object, dropped, closed the descriptor, and the cleanup closed it again (an OSError EBADF
    # instead of the KeyboardInterrupt; with threads, another file of the same number closed).
    real_fdopen, real_close, closed = os.fdopen, os.close, []

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        del f  # (dropped as the interrupt unwinds)
        raise KeyboardInterrupt

    def close(fd):
        closed.append(fd)
        real_close(fd)
    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "close", close)
    with pytest.raises(KeyboardInterrupt):
        pyrnn.Dense(2, 2).save(tmp_path / "m.pyrnn")
    monkeypatch.undo()
    assert len(closed) == len(set(closed)) and os.listdir(tmp_path) == []


def test_save_of_a_model_containing_itself_is_a_value_error():
    # A direct edit of .layers (add() refuses it): save() recursed into it (RecursionError).
    m = pyrnn.Sequential([pyrnn.Dense(4, 4)])
    m.layers.append(m)
    with pytest.raises(ValueError, match="cannot contain itself"):
        m.save(io.BytesIO())
    outer = pyrnn.Sequential([pyrnn.Sequential([pyrnn.Dense(4, 4)])])
    outer.layers[0].layers.append(outer)
    with pytest.raises(ValueError, match="cannot contain itself"):
        outer.save(io.BytesIO())


def test_load_of_a_files_contents_says_to_wrap_them(tmp_path, monkeypatch):
    # bytes are a path to open(): the contents themselves gave "embedded null byte" (helper-197)
    import io
    a = pyrnn.Dense(2, 2, seed=0)
    a.save(tmp_path / "m.pyrnn")
    data = (tmp_path / "m.pyrnn").read_bytes()
    for given in (data, bytearray(data), memoryview(data)):
        with pytest.raises(TypeError, match=r"not the file's contents: wrap them in io.BytesIO"):
            pyrnn.load(given)
    np.testing.assert_array_equal(pyrnn.load(io.BytesIO(data)).params["weight"], a.params["weight"])
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(pyrnn.load(b"m.pyrnn").params["weight"], a.params["weight"])
