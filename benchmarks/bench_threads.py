"""What a sweep cell would gain from the cores of its finished partners, and why the pool does not give them.

The default SynthDFER sweep runs two cells at a time with one torch thread each, and a cell keeps
its count to the end (``ifdd_bench.sweep.pool.CellPool``) even when it is the last one running.
This times one training step of such a cell
(``ifdd_tiny_pretext`` by default: forward, cross-entropy + auxiliary losses, backward, AdamW; batch
16, 16x64x64) with one thread and with ``--threads`` (default: every core), switching the thread
count of the same model in one process and interleaving the two round by round, so load drift slows
both alike. It prints median milliseconds and the median of the per-round ratios 1 thread / N,
then trains two steps from the same initialisation at 1 and at N threads and prints the largest
weight difference (thread counts change float summation order).

Example::

    python benchmarks/bench_threads.py              # ~15 s on 2 cores
    python benchmarks/bench_threads.py --model ifdd_tiny --variant baseline --rounds 9
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch
import torch.nn.functional as F

from bench_depthwise import _positive, interleaved  # same folder: run as a script
from ifdd_bench.engine.step import train_step
from ifdd_bench.errors import BenchError
from ifdd_bench.registry import create_model


def step_at(threads: int, batch: int, model_name: str, variant: str):
    """Two closures that run one training step of the same model at 1 and at ``threads`` threads."""
    torch.manual_seed(0)
    model = create_model(model_name, variant, frames=16, img_size=64, num_classes=7).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    x = torch.rand(batch, 3, 16, 64, 64)  # (B, C, T, H, W)
    y = torch.randint(0, 7, (batch,))

    def step(n: int) -> None:
        torch.set_num_threads(n)
        train_step(model, x, y, opt, F.cross_entropy)

    return (lambda: step(1)), (lambda: step(threads))


def weight_drift(threads: int, model_name: str, variant: str, batch: int = 16, steps: int = 2) -> float:
    """Largest absolute weight difference after ``steps`` identical training steps at 1 and at ``threads``."""
    finals = []
    for n in (1, threads):
        torch.set_num_threads(n)
        torch.manual_seed(0)
        model = create_model(model_name, variant, frames=16, img_size=64, num_classes=7).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(batch, 3, 16, 64, 64, generator=gen)  # (B, C, T, H, W)
        y = torch.randint(0, 7, (batch,), generator=gen)
        for _ in range(steps):
            train_step(model, x, y, opt, F.cross_entropy)
        finals.append([p.detach().clone() for p in model.parameters()])
    return max((a - b).abs().max().item() for a, b in zip(*finals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=_positive, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=_positive, default=5)
    parser.add_argument("--batch", type=_positive, default=16)
    parser.add_argument("--model", default="ifdd_tiny_pretext")
    parser.add_argument("--variant", default="full")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.rounds} interleaved rounds of 2 steps")
    try:
        one, many, ratio = interleaved(*step_at(args.threads, args.batch, args.model, args.variant),
                                       args.rounds, repeats=2)
        drift = weight_drift(args.threads, args.model, args.variant, args.batch)
    except BenchError as err:  # unknown model or variant
        sys.exit(f"bench_threads.py: error: {err}")
    print(f"{'case':<44} {'1 thread ms':>12} {f'{args.threads} threads ms':>14} {'ratio':>6}")
    label = f"{args.model}:{args.variant} train step, batch {args.batch}"
    print(f"{label:<44} {one * 1e3:>12.1f} {many * 1e3:>14.1f} {ratio:>5.2f}x")
    print(f"largest weight difference after 2 steps at 1 vs {args.threads} threads: {drift:.2e}")


if __name__ == "__main__":
    main()
