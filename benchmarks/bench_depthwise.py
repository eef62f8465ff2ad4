"""Depthwise Conv3d pooling: built-in backward vs the forward-conv rewrite (``models/depthwise.py``).

Two measurements, each interleaved round by round in one process (built-in, rewrite, built-in, ...)
so that load drift on a shared machine slows both alike; the table gives median milliseconds and
the median of the per-round ratios built-in / rewrite:

* ``pools``: forward + backward of one depthwise 3x3x3 conv at the shapes of ``ifdd_tiny``'s
  pooling layers (batch 16, 16x64x64 clips; heads x batch folded into the batch axis);
* ``step``: one ``ifdd_tiny`` training step (forward, cross-entropy + lifting loss, backward, AdamW)
  at batch 16, the rewrite switched on and off on the same model (``--geometry tiny`` only).

``--geometry paper`` times the paper model's stride-1 pools (batch 2) instead; its whole step is
``benchmarks/bench_ifdd.py``'s job.

One torch thread by default (the sweep runs one thread per cell). Example::

    python benchmarks/bench_depthwise.py              # ~1 minute
    python benchmarks/bench_depthwise.py --threads 2 --rounds 9
    python benchmarks/bench_depthwise.py --geometry paper --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from ifdd_bench.engine.step import train_step
from ifdd_bench.models.depthwise import depthwise_conv3d
from ifdd_bench.models.mvit import HeadPool
from ifdd_bench.registry import create_model

#: (x shape (B*heads, d, T, H, W), stride) of the pools, per geometry: ifdd_tiny at batch 16, and
#: the stride-1 pools that the rewrite takes over in the paper model at batch 2 (head width 96)
POOL_SHAPES = {
    "tiny": [((16, 16, 8, 16, 16), 1), ((32, 16, 8, 16, 16), 2), ((64, 16, 8, 8, 8), 2),
             ((64, 16, 8, 4, 4), 1), ((128, 16, 8, 4, 4), 1), ((128, 16, 8, 4, 4), 2)],
    "paper": [((2, 96, 8, 56, 56), 1), ((4, 96, 8, 28, 28), 1), ((8, 96, 8, 14, 14), 1), ((16, 96, 8, 7, 7), 1)],
}


def _seconds(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def interleaved(builtin, rewrite, rounds: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of each and the median per-round ratio builtin / rewrite (after one warm-up)."""
    builtin(), rewrite()
    times_b, times_r = [], []
    for i in range(rounds):
        order = [(builtin, times_b), (rewrite, times_r)]
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            sink.append(_seconds(fn, repeats))
    ratios = [b / r for b, r in zip(times_b, times_r)]
    return statistics.median(times_b), statistics.median(times_r), statistics.median(ratios)


def pool_case(shape, stride):
    x = torch.randn(shape)
    w = torch.randn(shape[1], 1, 3, 3, 3)
    grad = torch.randn(F.conv3d(x, w, None, (1, stride, stride), 1, 1, shape[1]).shape)

    def builtin():
        a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
        F.conv3d(a, b, None, (1, stride, stride), 1, 1, shape[1]).backward(grad)

    def rewrite():
        a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
        depthwise_conv3d(a, b, stride).backward(grad)

    return builtin, rewrite


def step_case(batch: int):
    torch.manual_seed(0)
    model = create_model("ifdd_tiny", "full").train()
    pools = [m for m in model.modules() if isinstance(m, HeadPool)]
    rewritable = [p for p in pools if p.cpu_rewrite]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    x = torch.rand(batch, 3, 16, 64, 64)
    y = torch.randint(0, 7, (batch,))

    def step(rewrite: bool):
        for p in rewritable:
            p.cpu_rewrite = rewrite
        train_step(model, x, y, opt, F.cross_entropy)

    return (lambda: step(False)), (lambda: step(True)), f"{len(rewritable)} of {len(pools)} pools rewritten"


def _positive(text: str) -> int:
    """argparse type: an integer >= 1 (0 rounds would leave nothing to take a median of)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=_positive, default=1)
    parser.add_argument("--rounds", type=_positive, default=5)
    parser.add_argument("--batch", type=_positive, default=16)
    parser.add_argument("--geometry", choices=sorted(POOL_SHAPES), default="tiny")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds")
    print(f"{'case':<40} {'built-in ms':>12} {'rewrite ms':>11} {'ratio':>6}")
    repeats = 5 if args.geometry == "tiny" else 1
    for shape, stride in POOL_SHAPES[args.geometry]:
        b, r, ratio = interleaved(*pool_case(shape, stride), args.rounds, repeats=repeats)
        print(f"{'pool ' + str(shape) + ' s' + str(stride):<40} {b * 1e3:>12.1f} {r * 1e3:>11.1f} {ratio:>5.2f}x")
    if args.geometry != "tiny":
        return
    builtin, rewrite, note = step_case(args.batch)
    b, r, ratio = interleaved(builtin, rewrite, args.rounds, repeats=2)
    print(f"{'ifdd_tiny train step, batch ' + str(args.batch):<40} {b * 1e3:>12.1f} {r * 1e3:>11.1f} {ratio:>5.2f}x")
    print(f"({note})")


if __name__ == "__main__":
    main()
