"""Deliberate type errors: each line marked "# E<n>" must be reported by mypy."""
import numpy as np
import pyrnn
from pyrnn import callbacks, optim

lstm = pyrnn.LSTM(4, "8")  # E1 hidden size as a str
rnn = pyrnn.RNN(4, 8, nonlinearity="sigmoid")  # E2 not an RNN nonlinearity
gru = pyrnn.GRU(4, 8, batch_frist=True)  # E3 misspelt keyword
lstm.fit(np.zeros((2, 3, 4)))  # E4 no such method on a layer
lstm.hidden_size = 16  # E5 read-only configuration
dense = pyrnn.Dense(4, 2, activation="softmax")  # E6 not an activation
y, state = lstm(np.zeros((3, 4)))
print(state.shape)  # E7 an LSTM returns (y, (h_n, c_n)): state is a tuple
opt = optim.Adam(lstm.parameters(), lr="fast")  # E8 lr as a str
cb = callbacks.LambdaCallback(on_epoch_ends=print)  # E9 unknown hook
model = pyrnn.Sequential([dense])
loss: str = model.evaluate(np.zeros((2, 4)), np.zeros(2), loss="mse")  # E10 returns a float
