"""The seeds' "GRU in PyTorch" training example, rewritten with pyrnn.

Seed document 002: a two-layer GRU (input 3, hidden 50) with a Linear head on h_n[-1],
MSELoss, Adam(lr=0.001), 20 epochs on one random batch (32 sequences of 10 steps). The GRU is
torch.nn.GRU's form (reset_after=True; pyrnn's default is the original paper's, which the
seed's prose describes). With pyrnn the loop is the same; backward goes through the head, then into the GRU as the gradient of
its final state (d_h_n), with no gradient on the output sequence.

    python examples/seeds_gru_training.py [--quick]
"""
import argparse

import numpy as np

import pyrnn
from pyrnn import losses, optim


class GRUModel:
    def __init__(self, input_size, hidden_size, output_size, num_layers=2):
        self.gru = pyrnn.GRU(input_size, hidden_size, num_layers, batch_first=True,
                             reset_after=True, seed=0)  # (torch.nn.GRU's form)
        self.fc = pyrnn.Dense(hidden_size, output_size, seed=1)

    def parameters(self):
        yield from self.gru.parameters()
        yield from self.fc.parameters()

    def train(self):
        self.gru.train()
        self.fc.train()

    def __call__(self, x):
        output, h_n = self.gru(x)
        self._shapes = output.shape, h_n.shape
        return self.fc(h_n[-1])

    def backward(self, d_output):
        out_shape, hn_shape = self._shapes
        d_h_n = np.zeros(hn_shape, np.float32)
        d_h_n[-1] = self.fc.backward(d_output)          # only the last layer's state is used
        self.gru.backward(np.zeros(out_shape, np.float32), d_h_n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs instead of 20")
    args = ap.parse_args(argv)

    input_size, hidden_size, output_size, num_layers = 3, 50, 1, 2
    model = GRUModel(input_size, hidden_size, output_size, num_layers)
    criterion = losses.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001)

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((32, 10, input_size), dtype=np.float32)   # batch, seq, input
    targets = rng.standard_normal((32, output_size), dtype=np.float32)

    num_epochs = 3 if args.quick else 20
    for epoch in range(num_epochs):
        model.train()
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        model.backward(criterion.backward())
        optimizer.step()
        print(f"Epoch {epoch + 1}/{num_epochs}, Loss: {loss:.4f}")
    return loss


if __name__ == "__main__":
    main()
