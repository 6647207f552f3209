"""Training throughput (images/s) of the VAE, the beta-TCVAE and the Seatbelt-VAE on the same nets.

Prints a table: one optimiser step (forward, backward, Adam) at batch 1024 on binary images at
64x64 and 32x32, and the overhead of the TC penalty and of the hierarchy over the plain VAE step.
Goal (issue 2): TC overhead at most 10%.

    python bench/train_throughput.py [--batch 1024] [--steps 5] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from seatbelt.models import ModelConfig, build_model, seatbelt_sizes


def step_seconds(config: ModelConfig, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(config).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (torch.rand(batch, *config.data_shape) > 0.8).float() * 2 - 1
    times = []
    for i in range(steps + 1):  # the first step warms up allocators and is not timed
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(x).total.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    latents, hidden = seatbelt_sizes(4)
    rows = []
    for size in (64, 32):
        common = dict(data_shape=(1, size, size), dataset_size=737_280)
        models = {
            "VAE (ELBO)": ModelConfig(objective="elbo", **common),
            "beta-TCVAE (MWS)": ModelConfig(beta=4, **common),
            "beta-TCVAE (MSS)": ModelConfig(beta=4, tc_estimator="mss", **common),
            "Seatbelt L=4": ModelConfig(kind="seatbelt", beta=4, latent_sizes=latents, hidden_sizes=hidden, **common),
        }
        base = None
        for name, config in models.items():
            seconds = step_seconds(config, args.batch, args.steps)
            base = base or seconds
            rows.append({"size": f"{size}x{size}", "model": name, "s/step": round(seconds, 3),
                         "images/s": round(args.batch / seconds), "overhead vs VAE": f"{seconds / base - 1:+.1%}"})
    print(f"batch {args.batch}, median of {args.steps} steps, {args.threads} threads, torch {torch.__version__}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
