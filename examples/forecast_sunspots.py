"""Time-series forecasting: next year's sunspot number from the previous 20 years.

Data: yearly sunspot numbers 1700-2008 (public domain, NOAA NGDC; see data/README.md).
A GRU reads a window of 20 years and a Dense layer predicts the following year. The model
trains on the years up to 1958 and is scored on 1959-2008 (one step ahead), next to two
baselines: "same as last year" (persistence) and the training mean.

    python examples/forecast_sunspots.py [--quick] [--epochs 60] [--seed 0]
"""
import argparse
import csv
import os

import numpy as np

import pyrnn
from pyrnn import losses, optim

HERE = os.path.dirname(os.path.abspath(__file__))


def load_sunspots(path=os.path.join(HERE, "data", "sunspots_yearly.csv")):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    years = np.array([int(r["YEAR"]) for r in rows])
    values = np.array([float(r["SUNACTIVITY"]) for r in rows], np.float32)
    return years, values


def windows(series, width):
    """x (n, width, 1): consecutive windows; y (n, 1): the value after each window."""
    x = np.stack([series[i:i + width] for i in range(series.size - width)])[:, :, None]
    return x, series[width:, None]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two epochs (smoke test)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    epochs = 2 if args.quick else args.epochs
    pyrnn.set_num_threads(1)  # a small model: one thread is fastest

    years, spots = load_sunspots()
    split_year = 1959
    n_train = int(np.searchsorted(years, split_year))
    if not 1 <= args.window < n_train:  # at least one training window before the split
        ap.error(f"--window must be in [1, {n_train - 1}] ({n_train} years before "
                 f"{split_year}), got {args.window}")
    mean, std = spots[:n_train].mean(), spots[:n_train].std()  # training statistics only
    z = (spots - mean) / std
    x, y = windows(z, args.window)
    target_years = years[args.window:]
    train = target_years < split_year
    x_tr, y_tr, x_te, y_te = x[train], y[train], x[~train], y[~train]

    model = pyrnn.Sequential([pyrnn.GRU(1, 32, batch_first=True, seed=args.seed),
                              pyrnn.LastStep(),
                              pyrnn.Dense(32, 1, seed=args.seed + 1)])
    model.fit(x_tr, y_tr, loss=losses.MSELoss(), optimizer=optim.Adam(model.parameters(), 3e-3),
              epochs=epochs, batch_size=16, clip_norm=1.0, verbose=2 if not args.quick else 0,
              seed=args.seed)

    pred = model.predict(x_te)[:, 0] * std + mean
    truth = y_te[:, 0] * std + mean
    last = x_te[:, -1, 0] * std + mean  # persistence: the previous year's value

    def rmse(p):
        return float(np.sqrt(np.mean((p - truth) ** 2)))

    print(f"one-step-ahead RMSE on {target_years[~train][0]}-{target_years[~train][-1]} "
          f"(sunspot number):")
    print(f"  GRU ({model.num_parameters()} parameters, {epochs} epochs): {rmse(pred):6.1f}")
    print(f"  persistence (same as last year):      {rmse(last):6.1f}")
    print(f"  training mean ({mean:.1f}):             {rmse(np.full_like(truth, mean)):6.1f}")
    print("year  actual  GRU  persistence")
    for yr, t, p, l in list(zip(target_years[~train], truth, pred, last))[-8:]:
        print(f"{yr}  {t:6.1f} {p:6.1f} {l:6.1f}")
    return rmse(pred), rmse(last)


if __name__ == "__main__":
    main()
