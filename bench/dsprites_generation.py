"""Time and peak memory to generate the whole dSprites set (737,280 images) at 64x64 and 32x32.

Each case runs in a fresh process so its peak resident memory is its own. Cases:

- 64x64 streamed: render the set chunk by chunk and drop each chunk (what a pass over the full
  64x64 set costs when it does not all have to sit in memory);
- 32x32 as one Data: ``dsprites(size=32)``, the whole set in memory (755 MB of uint8 images);
- 64x64 as one Data: ``dsprites(size=64)``, the whole set in memory (3.0 GB of uint8 images, as
  large as the official npz once decompressed);
- 64x64 packed as one Data: ``dsprites(size=64, packed=True)``, eight pixels to a byte (377 MB).

Usage: python bench/dsprites_generation.py [--threads 1] [--chunk 65536]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ("64x64 streamed", "32x32 as one Data", "64x64 as one Data", "64x64 packed as one Data")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(case: str, threads: int, chunk: int) -> dict:
    import torch

    from seatbelt.data import dsprites
    from seatbelt.data.base import unpack_bits
    from seatbelt.data.dsprites import N_IMAGES, factors_of, render

    torch.set_num_threads(threads)
    render(factors_of(torch.arange(10)), 64)  # warm up kernels before the clock starts
    baseline = _peak_mb()
    start = time.perf_counter()
    if case == "64x64 streamed":
        on_pixels = 0
        for first in range(0, N_IMAGES, chunk):
            images = render(factors_of(torch.arange(first, min(first + chunk, N_IMAGES))), 64)
            on_pixels += int(torch.count_nonzero(images))
        n, output_mb = N_IMAGES, chunk * 64 * 64 / 2**20
    else:
        data = dsprites(
            size=32 if case.startswith("32") else 64, source="generate", packed="packed" in case
        )
        n, output_mb = len(data), data.x.numel() / 2**20
        stored = (
            unpack_bits(data.x[i : i + 1024]) if data.packed else data.x[i : i + 1024]
            for i in range(0, n, 1024)
        )
        on_pixels = sum(int(torch.count_nonzero(x)) for x in stored)
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "images": n,
        "seconds": seconds,
        "peak_mb": _peak_mb(),
        "baseline_mb": baseline,
        "output_mb": output_mb,
        "mean_on": on_pixels / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per case (default 1)")
    parser.add_argument("--chunk", type=int, default=16_384, help="images per chunk when streaming")
    parser.add_argument(
        "--case", choices=CASES, help=argparse.SUPPRESS
    )  # used by the child processes
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.threads, args.chunk)))
        return

    print(f"dSprites generation, {args.threads} torch thread(s), one fresh process per case\n")
    print(
        "| case | images | seconds | peak RSS (MB) | of which imports (MB) | images held (MB) | "
        "mean on-pixels |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in CASES:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            case,
            "--threads",
            str(args.threads),
            "--chunk",
            str(args.chunk),
        ]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"| {r['case']} | {r['images']:,} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
            f"{r['baseline_mb']:.0f} | {r['output_mb']:.0f} | {r['mean_on']:.1f} |"
        )


if __name__ == "__main__":
    main()
