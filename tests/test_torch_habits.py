"""What a PyTorch user does with pyrnn, from a hunt over PyTorch habits: converting subclasses
that override forward, dropout masks of converted layers, PackedSequence inputs, and the
optimizer idioms (param_groups, zero_grad(set_to_none=...), numel). Each test failed before
its fix."""
import numpy as np
import pytest

import pyrnn
from pyrnn import optim

torch = pytest.importorskip("torch")


def test_from_torch_refuses_a_subclass_that_overrides_forward():
    class Doubled(torch.nn.LSTM):
        def forward(self, x, hx=None):
            out, h = super().forward(x, hx)
            return out * 2, h

    with pytest.raises(TypeError, match="overrides forward"):
        pyrnn.from_torch(Doubled(3, 4))
    with pytest.raises(TypeError, match="overrides forward"):
        pyrnn.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 3), Doubled(3, 4,
                                                                           batch_first=True)))

    class Tagged(torch.nn.GRU):  # adds attributes only: converted as a GRU
        tag = "mine"

    assert isinstance(pyrnn.from_torch(Tagged(3, 4)), pyrnn.GRU)


def test_converted_layers_draw_their_own_dropout_masks():
    t = torch.nn.LSTM(3, 4, 3, dropout=0.5)
    a, b = pyrnn.from_torch(t), pyrnn.from_torch(t)
    x = np.ones((4, 2, 3), np.float32)
    assert not np.array_equal(a(x)[0], b(x)[0])  # were the same masks, every call (seed 0)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_a_packed_sequence_input_says_what_to_pass():
    x = torch.zeros(5, 2, 3)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
    with pytest.raises(TypeError, match="PackedSequence is not taken: pass the padded tensor"):
        pyrnn.LSTM(3, 4)(packed)


def test_torch_optimizer_idioms():
    d = pyrnn.Dense(3, 2, seed=0)
    opt = optim.SGD(d.parameters(), lr=0.1, momentum=0.9)
    for group in opt.param_groups:
        group["lr"] = 0.5  # a schedule written for torch
    assert opt.lr == 0.5 and opt.param_groups[0]["momentum"] == 0.9
    assert len(opt.param_groups[0]["params"]) == 2
    opt.param_groups[0]["momentum"] = 0.1  # checked as the attribute (OneCycleLR sets it)
    assert opt.momentum == 0.1
    with pytest.raises(ValueError, match="momentum"):
        opt.param_groups[0]["momentum"] = -1.0
    with pytest.raises(KeyError, match="'foo' is not a hyperparameter of SGD"):
        opt.param_groups[0]["foo"] = 1
    with pytest.raises(TypeError, match="change it in place"):
        opt.param_groups[0]["params"] = []
    with pytest.raises(ValueError, match="lr"):
        opt.param_groups[0]["lr"] = -1.0
    d.grads["weight"] = np.ones((2, 3), np.float32)
    opt.zero_grad(set_to_none=True)
    assert not d.grads["weight"].any()
    assert next(d.parameters()).numel() == 6
