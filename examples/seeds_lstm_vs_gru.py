"""The seeds' "LSTM vs GRU" example (PyTorch), rewritten with pyrnn.

Seed document 000 builds an LSTMModel and a GRUModel (recurrent layer + Linear on the last
layer's final hidden state h_n[-1]) and runs one forward pass on random data (batch 3,
sequence 5, input 10, hidden 20). pyrnn returns the same (out, h_n) / (out, (h_n, c_n))
tuples as PyTorch. The GRU is PyTorch's form (reset_after=True: the reset gate scales
W_hn h + b_hn), as the seed's nn.GRU; pyrnn's default is the original paper's. The script
also counts parameters (pyrnn keeps one merged bias where torch keeps b_ih and b_hh, so its
counts are below torch's) and, when PyTorch is installed, checks both final states against
torch.nn.LSTM / torch.nn.GRU holding the same weights (layer.to_torch()).

    python examples/seeds_lstm_vs_gru.py [--quick]
"""
import argparse

import numpy as np

import pyrnn


class LSTMModel:
    def __init__(self, input_size, hidden_size, output_size):
        self.lstm = pyrnn.LSTM(input_size, hidden_size, batch_first=True, seed=0)
        self.fc = pyrnn.Dense(hidden_size, output_size, seed=1)

    def __call__(self, x):
        _, (h_n, _) = self.lstm(x)
        return self.fc(h_n[-1])


class GRUModel:
    def __init__(self, input_size, hidden_size, output_size):
        self.gru = pyrnn.GRU(input_size, hidden_size, batch_first=True, reset_after=True,
                             seed=0)  # (torch.nn.GRU's form)
        self.fc = pyrnn.Dense(hidden_size, output_size, seed=1)

    def __call__(self, x):
        _, h_n = self.gru(x)
        return self.fc(h_n[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="(already quick; accepted for CI)")
    ap.parse_args(argv)

    input_size, hidden_size, output_size = 10, 20, 1
    seq_len, batch_size = 5, 3
    x = np.random.default_rng(0).standard_normal((batch_size, seq_len, input_size),
                                                 dtype=np.float32)
    lstm_model = LSTMModel(input_size, hidden_size, output_size)
    gru_model = GRUModel(input_size, hidden_size, output_size)
    lstm_output = lstm_model(x)
    gru_output = gru_model(x)
    print("LSTM Output:", lstm_output.ravel())
    print("GRU Output:", gru_output.ravel())
    print(f"recurrent parameters: LSTM {lstm_model.lstm.num_parameters()}, "
          f"GRU {gru_model.gru.num_parameters()} (GRU/LSTM = "
          f"{gru_model.gru.num_parameters() / lstm_model.lstm.num_parameters():.2f})")

    try:
        import torch
    except ImportError:
        print("(PyTorch not installed: skipping the cross-check)")
        return lstm_output, gru_output
    t = lstm_model.lstm.to_torch()  # torch.nn.LSTM with the same parameters
    with torch.no_grad():
        _, (h_n, _) = t(torch.from_numpy(x))
    _, (h_ours, _) = lstm_model.lstm(x)
    err = float(np.abs(h_n.numpy() - h_ours).max())
    print(f"LSTM h_n vs torch.nn.LSTM with the same weights: max |difference| {err:.2e}")
    t = gru_model.gru.to_torch()  # torch.nn.GRU with the same parameters
    with torch.no_grad():
        _, h_n = t(torch.from_numpy(x))
    _, h_ours = gru_model.gru(x)
    err = float(np.abs(h_n.numpy() - h_ours).max())
    print(f"GRU h_n vs torch.nn.GRU with the same weights: max |difference| {err:.2e}")
    return lstm_output, gru_output


if __name__ == "__main__":
    main()
