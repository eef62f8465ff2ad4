"""A bare fine-tuning loop on a SynthDFER folder, for trying what the recipe has no key for.

The measurement behind the 2026-12-06 entry "can the IFDD rows learn within the budget?" of
docs/notebook/default-ablation.md. It is not the engine: no validation hold-out, no checkpoints.

* data: every clip of a SynthDFER folder (``clips.csv`` + the DFEW-layout JPEGs), resized with
  Pillow's bilinear filter to ``--size``; the clips of fold 1's test split are the test set, all
  others train (1,200 of the default preset's 1,500);
* training: AdamW (weight decay ``--wd``, default 0), batch ``--batch``, a per-step cosine from the
  peak to 1e-6 (after ``--warmup`` epochs of linear warmup, default 0), with ``--lr`` for the
  embedding and backbone and ``--lr-top`` (default: the same) for the rest; ``-s
  freeze_backbone=true`` keeps the backbone fixed and memoises its features per clip (the engine's
  ``train.feature_cache_mb``), so an epoch costs seconds;
* printed: the mean training loss and the test UAR after every epoch; ``--probe`` adds the test UAR
  with each clip's frames shuffled and with one random frame repeated, after the last epoch.

``--ladm-mlp-residual`` is a diagnostic, not IFDD: it adds the residual connection that the
reference's LADM refinement lacks around its MLP (spec 7.1 step 5, bug B9).

``--diagnose STEPS`` instead trains STEPS steps at ``--lr`` on batches drawn with replacement and
prints, every 8 steps, the gradient norm of each part, the spread across the batch of the head's
input, and (LADM tops) the share of positive pre-activations of LADM's MLP.

Examples::

    python benchmarks/finetune_loop.py --variant full --lr 3e-4 --lr-top 3e-3
    python benchmarks/finetune_loop.py --variant baseline --data-root /tmp/easy --epochs 10
    python benchmarks/finetune_loop.py --variant full --diagnose 80 --lr 1e-3
    python benchmarks/finetune_loop.py --variant no_ladm -s freeze_backbone=true --lr 1e-3 --wd 0.05 --epochs 20 --probe
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ifdd_bench.data.synth import ensure_dataset
from ifdd_bench.engine.loop import use_feature_memo
from ifdd_bench.errors import BenchError
from ifdd_bench.registry import create_model, get_entry

BACKBONE = ("embed", "backbone")
PARTS = {"backbone": BACKBONE, "pyramid": ("pyramid",), "top": ("top",), "head": ("head",)}


def load_clips(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 clips ``(N, T, size, size, 3)``, labels ``(N,)`` (0-based) and test folds ``(N,)``."""
    rows = list(csv.DictReader(open(root / "clips.csv")))
    frames = len(list((root / "Clip" / "clip_224x224_16f" / rows[0]["clip_id"]).glob("*.jpg")))
    clips = torch.zeros(len(rows), frames, size, size, 3, dtype=torch.uint8)
    for i, row in enumerate(rows):
        for t in range(frames):
            with Image.open(root / "Clip" / "clip_224x224_16f" / row["clip_id"] / f"{t + 1}.jpg") as img:
                img = img.convert("RGB")
                if img.size[0] != size:
                    img = img.resize((size, size), Image.BILINEAR)
                clips[i, t] = torch.from_numpy(np.array(img))
    labels = torch.tensor([int(r["label"]) - 1 for r in rows])
    folds = torch.tensor([int(r["fold"]) for r in rows])
    return clips, labels, folds


def as_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, 3, T, H, W)`` in [0, 1]."""
    return clips.permute(0, 4, 1, 2, 3).float() / 255


def uar(pred: torch.Tensor, target: torch.Tensor, classes: int = 7) -> float:
    """Unweighted average recall in %."""
    recalls = [((pred == c) & (target == c)).sum().item() / max(1, (target == c).sum().item()) for c in range(classes)]
    return 100 * sum(recalls) / classes


def train_epochs(model, clips, labels, train, test, args) -> None:
    backbone = [p for n, p in model.named_parameters() if n.startswith(BACKBONE) and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith(BACKBONE) and p.requires_grad]
    peaks = [args.lr, args.lr_top or args.lr]
    optim = torch.optim.AdamW([{"params": backbone, "lr": peaks[0]}, {"params": rest, "lr": peaks[1]}],
                              weight_decay=args.wd)
    per_epoch = math.ceil(len(train) / args.batch)
    total, step, warmup = args.epochs * per_epoch, 0, args.warmup * per_epoch
    for epoch in range(args.epochs):
        model.train()
        order, losses = train[torch.randperm(len(train))], []
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            for group, peak in zip(optim.param_groups, peaks):
                group["lr"] = step_lr(peak, step, total, warmup)
            out = model(as_input(clips[idx]))
            loss = F.cross_entropy(out.logits, labels[idx]) + sum(out.losses.values())
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
            losses.append(loss.item())
        print(f"epoch {epoch + 1}  train loss {sum(losses) / len(losses):.3f}  "
              f"test UAR {test_uar(model, clips[test], labels[test]):.1f}", flush=True)
    if args.probe:
        draw = torch.Generator().manual_seed(args.seed)
        x = clips[test]  # (N, T, H, W, 3)
        order = torch.stack([torch.randperm(x.shape[1], generator=draw) for _ in range(len(x))])  # (N, T)
        shuffled = torch.stack([clip[perm] for clip, perm in zip(x, order)])
        frame = torch.randint(0, x.shape[1], (len(x),), generator=draw)
        single = torch.stack([clip[t].expand_as(clip) for clip, t in zip(x, frame)])
        print(f"probes  shuffled {test_uar(model, shuffled, labels[test]):.1f}  "
              f"single frame {test_uar(model, single, labels[test]):.1f}", flush=True)


def step_lr(peak: float, step: int, total: int, warmup: int) -> float:
    """Linear warmup from 1e-6 over ``warmup`` steps, then a cosine from ``peak`` to 1e-6."""
    if step < warmup:
        return 1e-6 + (peak - 1e-6) * step / warmup
    return 1e-6 + (peak - 1e-6) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def test_uar(model, clips: torch.Tensor, labels: torch.Tensor) -> float:
    """UAR in % of ``model`` (eval mode) over uint8 clips ``(N, T, H, W, 3)``."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(as_input(clips[i:i + 32])).argmax(1) for i in range(0, len(clips), 32)])
    return uar(pred, labels)


class _PlusInput(torch.nn.Module):
    """``x -> x + inner(x)``."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def add_ladm_mlp_residual(model) -> None:
    """Diagnostic: the LADM refinement with ``z = y + MLP(LN(y))`` instead of the reference's ``MLP(LN(y))``."""
    top = model.top
    if not hasattr(top, "mlp"):
        raise SystemExit("--ladm-mlp-residual needs an LADM top (a variant with LADM)")
    top.mlp = _PlusInput(torch.nn.Sequential(top.norm2, top.mlp))
    top.norm2 = torch.nn.Identity()


def diagnose(model, clips, labels, train, args) -> None:
    optim = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.0)
    seen: dict[str, torch.Tensor] = {}
    mlp = getattr(model.top, "mlp", None)
    if mlp is not None:
        mlp[0].register_forward_hook(lambda mod, inp, out: seen.__setitem__("hidden", out.detach()))
    draw = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(args.diagnose):
        idx = train[torch.randint(0, len(train), (args.batch,), generator=draw)]
        out = model(as_input(clips[idx]))
        loss = F.cross_entropy(out.logits, labels[idx]) + sum(out.losses.values())
        optim.zero_grad()
        loss.backward()
        norms = {part: sum(float(p.grad.norm()) ** 2 for n, p in model.named_parameters()
                           if p.grad is not None and n.startswith(prefixes)) ** 0.5
                 for part, prefixes in PARTS.items()}
        optim.step()
        if step % 8 == 0 or step == args.diagnose - 1:
            spread = out.extras["detail"].std(0).mean().item()  # head input (B, C): spread across the batch
            line = f"step {step:3d}  loss {loss.item():.3f}  head-input spread {spread:.3f}  grad norms " + \
                " ".join(f"{k} {v:.3g}" for k, v in norms.items())
            if "hidden" in seen:
                line += f"  LADM MLP positive {(seen['hidden'] > 0).float().mean().item():.2f}"
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ifdd_tiny_pretext")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--data-root", default=None, help="SynthDFER folder (default: the cached default preset)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4, help="peak lr of the embedding and backbone")
    ap.add_argument("--lr-top", type=float, default=None, help="peak lr of everything else (default: --lr)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--diagnose", type=int, default=0, metavar="STEPS")
    ap.add_argument("--warmup", type=float, default=0.0, help="epochs of linear warmup before the cosine")
    ap.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--probe", action="store_true", help="after training: test UAR on shuffled / single-frame clips")
    ap.add_argument("--ladm-mlp-residual", action="store_true", help="diagnostic: a residual around LADM's MLP")
    ap.add_argument("-s", "--set", action="append", default=[], help="model config override KEY=VALUE")
    args = ap.parse_args()
    for name in ("epochs", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be 0 or more epochs, got {args.warmup}")
    if get_entry(args.model).family != "ifdd":
        raise SystemExit(f"finetune_loop trains IFDD models (--model ifdd_tiny, ifdd_tiny_pretext, ...); "
                         f"{args.model} is a baseline: train it with ifdd-bench run train --model {args.model}")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    root = Path(args.data_root) if args.data_root else Path(ensure_dataset("default"))
    if not (root / "clips.csv").is_file():
        raise SystemExit(f"error: {root} has no clips.csv; --data-root takes a SynthDFER folder "
                         "(ifdd-bench data synth --out-dir DIR)")
    clips, labels, folds = load_clips(root, args.size)
    train, test = (folds != 1).nonzero().squeeze(1), (folds == 1).nonzero().squeeze(1)
    model = create_model(args.model, args.variant, img_size=args.size, overrides=args.set)
    use_feature_memo(model, 1024)  # a frozen backbone (-s freeze_backbone=true) computes each clip once
    if args.ladm_mlp_residual:
        add_ladm_mlp_residual(model)
    if args.diagnose:
        diagnose(model, clips, labels, train, args)
    else:
        train_epochs(model, clips, labels, train, test, args)


if __name__ == "__main__":
    try:
        main()
    except BenchError as err:  # an unknown model, variant or -s key: its message, not a traceback
        raise SystemExit(f"error: {err}") from None
