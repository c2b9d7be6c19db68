"""The fuzz targets (tests/fuzz/) in the normal test run, without atheris: the committed seed
corpus plus a few thousand deterministic random and mutated inputs go through the same
test_one_input functions the coverage-guided runs use, so the targets stay valid and every
finding ever fixed (added to the corpus) stays fixed."""
import os
import sys

import numpy as np
import pytest

FUZZ = os.path.join(os.path.dirname(__file__), "fuzz")
sys.path.insert(0, FUZZ)
import fuzz_layer  # noqa: E402
import fuzz_load  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _remove_fuzz_files():
    yield
    fuzz_load.cleanup()


def corpus(name):
    folder = os.path.join(FUZZ, "corpus", name)
    out = []
    for f in sorted(os.listdir(folder)):
        with open(os.path.join(folder, f), "rb") as fh:
            out.append((f, fh.read()))
    return out


def mutants(seeds, n, seed):
    """Byte-level mutations of the seeds (flip, insert, delete, splice, overwrite)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 6))):
            op = int(rng.integers(0, 5))
            pos = int(rng.integers(0, len(data) + 1))
            if op == 0 and data:
                data[min(pos, len(data) - 1)] ^= 1 << int(rng.integers(0, 8))
            elif op == 1:
                data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
            elif op == 2:
                del data[pos:pos + int(rng.integers(1, 17))]
            elif op == 3:
                other = seeds[int(rng.integers(0, len(seeds)))]
                data = data[:pos] + other[pos:]
            elif data:
                data[min(pos, len(data) - 1)] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("name,data", corpus("load"), ids=[n for n, _ in corpus("load")])
def test_load_corpus(name, data):
    fuzz_load.test_one_input(data)


def test_load_mutants():
    seeds = [d for _, d in corpus("load") if d]
    for data in mutants(seeds, 1500, 0):
        fuzz_load.test_one_input(data)


@pytest.mark.parametrize("name,data", corpus("layer"), ids=[n for n, _ in corpus("layer")])
def test_layer_corpus(name, data):
    fuzz_layer.test_one_input(data)


def test_layer_random_inputs():
    rng = np.random.default_rng(1)
    seeds = [d for _, d in corpus("layer")]
    for data in mutants(seeds, 1500, 2):
        fuzz_layer.test_one_input(data)
    for _ in range(500):
        fuzz_layer.test_one_input(rng.integers(0, 256, int(rng.integers(0, 300)),
                                               dtype=np.uint8).tobytes())
