"""A layer of the user's own that is no pyrnn class: the methods Sequential calls and nothing
more (no dtype, no config), scaling its input by a constant."""
import numpy as np


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
