#!/usr/bin/python3
"""Trains the probabilistic forecaster on the synthetic set and exports it to ONNX.

The model maps a reading's context features (agent/scoring/features.ts, recipe ctx-v1) to a
Laplace distribution over the reading's normalised value: output [mu, log_b]. It is trained by
Laplace negative log-likelihood, which is robust to the spikes and shifts in the data (the model
should learn to be surprised by them, not to chase them).

Deterministic: fixed seeds, one thread. Debian's python3-torch 1.13 and python3-onnx are enough:
    /usr/bin/python3 models/train/train.py --data var/models/dataset --out models/forecaster/forecaster.onnx
"""
import argparse
import json
import os

import numpy as np
import torch
from torch import nn


class Forecaster(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x):
        out = self.body(x)
        # Bounded scale keeps the exported model finite on any input.
        mu = out[:, 0:1]
        log_b = torch.clamp(out[:, 1:2], -7.0, 3.0)
        return torch.cat([mu, log_b], dim=1)


def laplace_nll(pred, y):
    mu, log_b = pred[:, 0], pred[:, 1]
    return (torch.abs(y - mu) * torch.exp(-log_b) + log_b).mean()


def load(data, split, n_in):
    x = np.fromfile(os.path.join(data, f"{split}-features.f32"), dtype="<f4").reshape(-1, n_in)
    y = np.fromfile(os.path.join(data, f"{split}-targets.f32"), dtype="<f4")
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="var/models/dataset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=64)
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
    xt, yt = load(args.data, "train", n_in)
    xv, yv = load(args.data, "valid", n_in)

    model = Forecaster(n_in, args.hidden)
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
        "hidden": args.hidden, "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "train_rows": len(xt), "valid_rows": len(xv),
        "final": history[-1],
    }
    with open(args.out + ".train.json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
