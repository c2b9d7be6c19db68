"""A layer of the user's own that is no pyrnn class: the methods Sequential calls and nothing
more (no dtype, no config), scaling its input by a constant; and an optimizer of the user's
own keeping state of its own (a matrix, a count)."""
import numpy as np

from pyrnn import optim


class ScaleLayer:
    training = True

    def __init__(self, factor):
        self.factor = factor

    def forward(self, x, lengths=None):
        return np.asarray(x) * self.factor

    def backward(self, d):
        return d * self.factor

    def parameters(self):
        return iter(())

    def zero_grad(self):
        pass

    def train(self, mode=True):
        self.training = mode
        return self


class Whitened(optim.Optimizer):
    """A custom optimizer whose state per parameter is its own: "L", np.eye(2) (a matrix of
    the size of a 2x2 weight), and a step count "n"; parameters with 2 rows."""

    def __init__(self, params, lr=0.1):
        super().__init__(params)
        self.lr = lr

    def _update(self, data, grad, state):
        if "L" not in state:
            state["L"], state["n"] = np.eye(2), 0
        state["n"] += 1
        data -= self.lr * (state["L"] @ grad.reshape(2, -1)).reshape(-1)
