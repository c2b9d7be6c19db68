"""The seeds' "Simple RNN Implementation" (PyTorch), rewritten with pyrnn.

Seed document 000 defines an RNNModel (nn.RNN + nn.Linear on the last step's output), trains it
with MSELoss and Adam(lr=0.01) for 100 epochs on random data and prints the loss every 10
epochs. The same structure here: a small class with forward() and backward() (pyrnn has no
autograd: each layer's backward() returns the gradient of its input and accumulates its
parameter gradients), optimizer.zero_grad() / loss / backward / optimizer.step().

    python examples/seeds_rnn_model.py [--quick]
"""
import argparse

import numpy as np

import pyrnn
from pyrnn import losses, optim


class RNNModel:
    def __init__(self, input_size, hidden_size, output_size):
        self.hidden_size = hidden_size
        self.rnn = pyrnn.RNN(input_size, hidden_size, batch_first=True, seed=0)
        self.fc = pyrnn.Dense(hidden_size, output_size, seed=1)

    def parameters(self):
        yield from self.rnn.parameters()
        yield from self.fc.parameters()

    def forward(self, x):
        h0 = np.zeros((1, x.shape[0], self.hidden_size), np.float32)  # initial hidden state
        out, _ = self.rnn(x, h0)                                        # (N, T, H)
        self._out_shape = out.shape
        return self.fc(out[:, -1, :])                                   # last step -> Linear

    __call__ = forward

    def backward(self, d_output):
        d_last = self.fc.backward(d_output)              # (N, H)
        d_out = np.zeros(self._out_shape, np.float32)    # only the last step feeds the output
        d_out[:, -1, :] = d_last
        self.rnn.backward(d_out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 epochs instead of 100")
    args = ap.parse_args(argv)

    # Parameters (as in the seed)
    input_size, hidden_size, output_size = 1, 10, 1
    sequence_length, batch_size = 5, 3

    # Dummy data
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, sequence_length, input_size), dtype=np.float32)
    y = rng.standard_normal((batch_size, output_size), dtype=np.float32)

    model = RNNModel(input_size, hidden_size, output_size)
    criterion = losses.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=0.01)

    for epoch in range(10 if args.quick else 100):
        optimizer.zero_grad()
        output = model(x)
        loss = criterion(output, y)
        model.backward(criterion.backward())
        optimizer.step()
        if epoch % 10 == 0:
            print(f"Epoch {epoch}, Loss: {loss:.4f}")
    return loss


if __name__ == "__main__":
    main()
