#!/usr/bin/python3
"""Trains the probabilistic forecaster on the synthetic set and exports it to ONNX.

The model maps a reading's context features (common/model-features.ts, recipe ctx-v1) to one
Laplace distribution per head over the reading's normalised value: output
[mu_step, log_b_step, mu_level, log_b_level]. It is trained by Laplace negative log-likelihood,
which is robust to the spikes and shifts in the data (the model should learn to be surprised by
them, not to chase them).

Deterministic: fixed seeds, one thread. Debian's python3-torch 1.13 and python3-onnx are enough.
Normally run by `npm run train:model` (models/train/build.ts), which first writes the data set:
    /usr/bin/python3 models/train/train.py --data var/models/dataset --out models/forecaster/forecaster-1.0.0.onnx
"""
import argparse
import json
import os

import numpy as np
import torch
from torch import nn


def mlp(n_in, hidden):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


class Forecaster(nn.Module):
    """Two heads, one output row [mu_step, log_b_step, mu_level, log_b_level] per reading.

    The level head only sees the columns listed in meta.json's levelInputs (profiles, flags,
    hints), never the recent values, so it cannot learn to follow the stream from one reading to
    the next: that is the point of it.
    """

    def __init__(self, n_in, level_inputs, hidden, level_hidden):
        super().__init__()
        self.register_buffer("level_idx", torch.tensor(level_inputs, dtype=torch.long))
        self.step = mlp(n_in, hidden)
        self.level = mlp(len(level_inputs), level_hidden)

    def forward(self, x):
        a = self.step(x)
        b = self.level(torch.index_select(x, 1, self.level_idx))
        # Bounded scales keep the exported model finite on any input.
        return torch.cat([a[:, 0:1], torch.clamp(a[:, 1:2], -7.0, 3.0), b[:, 0:1], torch.clamp(b[:, 1:2], -7.0, 3.0)], dim=1)


def laplace_nll(pred, y):
    total = 0
    for h in range(y.shape[1]):
        mu, log_b = pred[:, 2 * h], pred[:, 2 * h + 1]
        total = total + (torch.abs(y[:, h] - mu) * torch.exp(-log_b) + log_b).mean()
    return total


def load(data, split, n_in, n_heads):
    x = np.fromfile(os.path.join(data, f"{split}-features.f32"), dtype="<f4").reshape(-1, n_in)
    y = np.fromfile(os.path.join(data, f"{split}-targets.f32"), dtype="<f4").reshape(-1, n_heads)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="var/models/dataset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", help="training report (JSON); default: <out>.train.json")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--level-hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    meta = json.load(open(os.path.join(args.data, "meta.json")))
    n_in = meta["features"]
    n_heads = len(meta["heads"])
    xt, yt = load(args.data, "train", n_in, n_heads)
    xv, yv = load(args.data, "valid", n_in, n_heads)

    model = Forecaster(n_in, meta["levelInputs"], args.hidden, args.level_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad()
            loss = laplace_nll(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            valid = laplace_nll(model(xv), yv).item()
        history.append({"epoch": epoch + 1, "train_nll": total / len(xt), "valid_nll": valid})
        print(json.dumps(history[-1]), flush=True)

    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.onnx.export(
        model, torch.zeros(1, n_in), args.out,
        input_names=["features"], output_names=["forecast"],
        dynamic_axes={"features": {0: "batch"}, "forecast": {0: "batch"}},
        opset_version=13, do_constant_folding=True,
    )
    report = {
        "framework": f"torch {torch.__version__}",
        "hidden": args.hidden, "level_hidden": args.level_hidden, "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "train_rows": len(xt), "valid_rows": len(xv),
        "final": history[-1],
    }
    with open(args.report or args.out + ".train.json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
