"""Can ``ifdd_tiny`` fit a small fixed set of SynthDFER clips? Raw [0, 1] input vs standardised.

The measurement behind the ``input_norm=kinetics`` default of ``ifdd_tiny`` (docs/models.md,
"Presets"; the numbers it printed are in benchmarks/README.md). Both configurations start from the
same seed and see the same batches:

* data: the first ``--clips`` training clips of fold 1 of an easy SynthDFER variant (no resting
  expression, no distractors, flicker or noise, doubled drawn movement, expressions spanning
  50-80 % of the clip), 16 x 64 x 64, no augmentation, generated once into the SynthDFER cache;
* model: ``ifdd_tiny`` with the GAP head (``--variant``), ``input_norm`` none vs kinetics;
* optimiser: AdamW lr 3e-4, weight decay 0.05, batch 16 drawn with replacement, ``--steps`` steps;
* printed: training-set accuracy (eval mode, all clips) every ``--every`` steps.

Example::

    python benchmarks/tiny_trainability.py            # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ifdd_bench.config import DataConfig
from ifdd_bench.data import build_datasets
from ifdd_bench.data.synth import ensure_dataset
from ifdd_bench.engine.step import train_step
from ifdd_bench.registry import create_model

EASY_KNOBS = dict(rest_strength=0.0, rest_noise=0.0, expression_gain=2.0, expression_span=(0.5, 0.8),
                  distractor=0.0, flicker=0.0, noise=0.0)


def load_clips(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training clips of the easy variant: ``(N, 3, 16, 64, 64)`` and labels ``(N,)``."""
    root = ensure_dataset("default", **EASY_KNOBS)
    data = DataConfig(dataset="synth", data_root=str(root), size=64, train_aug="none", cache_clips=True)
    train = build_datasets(data, seed=0, protocol="unified").train
    clips, labels = zip(*(train[i] for i in range(count)))
    return torch.stack(clips), torch.tensor(labels)


def fit(variant: str, input_norm: str, clips: torch.Tensor, labels: torch.Tensor, steps: int,
        every: int, seed: int) -> list[tuple[int, float]]:
    """Train from ``seed``; return ``(step, training-set accuracy)`` every ``every`` steps."""
    torch.manual_seed(seed)
    model = create_model("ifdd_tiny", variant, overrides={"input_norm": input_norm})
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    batches = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            with torch.no_grad():
                accuracy = (model(clips).argmax(1) == labels).float().mean().item()
            curve.append((step, accuracy))
            model.train()
        if step == steps:
            break
        idx = torch.randint(0, len(clips), (16,), generator=batches)
        train_step(model, clips[idx], labels[idx], optimiser, F.cross_entropy)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="gap")
    ap.add_argument("--clips", type=int, default=128)
    ap.add_argument("--steps", type=int, default=140)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    clips, labels = load_clips(args.clips)
    curves = {norm: fit(args.variant, norm, clips, labels, args.steps, args.every, args.seed)
              for norm in ("none", "kinetics")}
    print(f"ifdd_tiny:{args.variant}, {args.clips} fixed clips, AdamW lr 3e-4, batch 16: training-set accuracy")
    print("step   " + "  ".join(f"{norm:>9}" for norm in curves))
    for i, (step, _) in enumerate(curves["none"]):
        print(f"{step:4d}   " + "  ".join(f"{curves[norm][i][1]:9.3f}" for norm in curves))


if __name__ == "__main__":
    main()
