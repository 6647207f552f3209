"""Seconds to compute MIG (seatbelt.metrics.mig_table) on dSprites-shaped codes, D = 10.

Factors are the dSprites grid (shape 3, scale 6, orientation 40, posX 32, posY 32): all 737,280
points, or a random subset for smaller N. The code copies four factors into latents with
posterior std 0.3 and leaves six latents as noise, so the table also shows a plausible MIG.
With S = min(n_samples, N) sample points the work is about S N D (1 + sum_k sum_v p(v)^2)
one-dimensional Gaussian log-densities (1.59 S N D on the full grid); the table gives that count
and the nanoseconds per log-density.

    OMP_NUM_THREADS=1 python bench/mig.py [--n 10000 100000 737280] [--n-samples 10000]
        [--threads 1] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from seatbelt.data.dsprites import FACTOR_NAMES, FACTOR_SIZES
from seatbelt.device import resolve
from seatbelt.metrics import mig_from_table, mig_table


def code(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu, logvar, factors) for n points of the dSprites grid."""
    gen = torch.Generator().manual_seed(seed)
    factors = torch.cartesian_prod(*[torch.arange(s) for s in FACTOR_SIZES])
    factors = factors[torch.randperm(len(factors), generator=gen)[:n]]
    mu = torch.randn(n, 10, generator=gen)
    logvar = torch.zeros(n, 10)
    for j, k in enumerate(
        (1, 2, 3, 4)
    ):  # scale, orientation, posX, posY -> z0..z3, spread to unit range
        mu[:, j] = factors[:, k] / (FACTOR_SIZES[k] - 1) * 4
        logvar[:, j] = 2 * torch.log(torch.tensor(0.3))
    return mu, logvar, factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 737_280])
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve(args.device)

    rows = []
    for n in args.n:
        mu, logvar, factors = code(n)
        mu, logvar = mu.to(device), logvar.to(device)
        s = min(args.n_samples, n)
        counts = [
            torch.unique(factors[:, k], return_counts=True)[1].double() / n
            for k in range(factors.shape[1])
        ]
        evals = s * n * mu.shape[1] * (1 + sum(float((p**2).sum()) for p in counts))
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        table = mig_table(mu, logvar, factors, n_samples=args.n_samples, names=FACTOR_NAMES)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows.append(
            {
                "N": n,
                "S": s,
                "D": mu.shape[1],
                "log-densities": f"{evals:.2e}",
                "seconds": round(seconds, 2),
                "ns / log-density": round(seconds / evals * 1e9, 2),
                "MIG": round(mig_from_table(table), 3),
                "MIG w/o shape": round(mig_from_table(table, exclude=("shape",)), 3),
            }
        )
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    print(f"\ndevice {device}, {args.threads} thread(s)")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
