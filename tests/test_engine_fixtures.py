"""Shared fixtures of the engine tests (no tests in here): a tiny registered model, an in-memory
clip dataset, and a script entry point used by the kill-and-resume and DDP tests::

    python tests/test_engine_fixtures.py RUNS_DIR [--epochs 3] [--protocol unified] [--mixup 0]
    torchrun --nproc_per_node 2 tests/test_engine_fixtures.py RUNS_DIR ...

The model has no BatchNorm and no dropout, so one process with batch B and N processes with
batch B/N compute the same gradient (DDP averages the per-rank means of equal-sized shards).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ifdd_bench.config import DataConfig, RunSpec, protocol_preset  # noqa: E402
from ifdd_bench.engine.seeding import derive_seed  # noqa: E402
from ifdd_bench.models.output import ModelOutput  # noqa: E402
from ifdd_bench.registry import register_model  # noqa: E402

CLASSES = ("red", "green", "blue")
TEST_MODEL = "engine_test_net"


@dataclass(frozen=True)
class EngineTestNetConfig:
    num_classes: int = 3
    frames: int = 4
    img_size: int = 8
    width: int = 8  # conv channels
    aux_weight: float = 0.0  # > 0: train mode returns ModelOutput with an auxiliary L2 loss on the features
    nan_after: int = 0  # > 0: after this many training forwards the logits become NaN (divergence test)


class EngineTestNet(nn.Module):
    """Conv3d -> ReLU -> global average pool -> Linear; no BN, no dropout."""

    def __init__(self, cfg: EngineTestNetConfig):
        super().__init__()
        self.cfg = cfg
        self.conv = nn.Conv3d(3, cfg.width, kernel_size=3, padding=1)
        self.fc = nn.Linear(cfg.width, cfg.num_classes)
        self.train_calls = 0

    def forward(self, x: torch.Tensor):
        feats = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))  # (B, width)
        logits = self.fc(feats)  # (B, K)
        if not self.training:
            return logits
        self.train_calls += 1
        if self.cfg.nan_after and self.train_calls > self.cfg.nan_after:
            logits = logits * float("nan")
        if self.cfg.aux_weight > 0:
            return ModelOutput(logits, {"feat_l2": self.cfg.aux_weight * feats.pow(2).mean()})
        return logits


@register_model(TEST_MODEL, config_cls=EngineTestNetConfig, ablations={"full": {}, "wide": {"width": 16}},
                description="engine test model (tests only)")
def engine_test_net(cfg: EngineTestNetConfig) -> nn.Module:
    return EngineTestNet(cfg)


class MemoryClips(Dataset):
    """Clips whose colour channel ``label`` is brighter, plus per-(seed, epoch, index) noise
    (standing in for augmentation randomness, so resume must replay the epoch's seed)."""

    def __init__(self, labels: list[int], *, seed: int, frames: int = 4, size: int = 8, views: int = 1):
        self.labels = list(labels)
        self.seed, self.frames, self.size, self.views = seed, frames, size, views
        self.epoch = 0
        self.records = [SimpleNamespace(clip_id=f"clip{i:03d}") for i in range(len(labels))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def _clip(self, index: int, view: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, index, view) % 2**62)
        clip = 0.3 * torch.rand(3, self.frames, self.size, self.size, generator=gen)  # (C, T, H, W)
        clip[self.labels[index]] += 0.25 + 0.2 * torch.rand(1, generator=gen)
        return clip.clamp(0, 1)

    def __getitem__(self, index: int):
        if self.views > 1:
            return torch.stack([self._clip(index, v) for v in range(self.views)]), self.labels[index]  # (V, C, T, H, W)
        return self._clip(index, 0), self.labels[index]


def make_bundle(*, seed: int = 0, n_train: int = 48, n_val: int = 12, n_test: int = 24, views: int = 1,
                with_val: bool = True, test_labels: list[int] | None = None):
    """A DatasetBundle-like namespace over :class:`MemoryClips`."""
    def labels(n: int, offset: int) -> list[int]:
        return [(i + offset) % len(CLASSES) for i in range(n)]

    return SimpleNamespace(
        train=MemoryClips(labels(n_train, 0), seed=seed),
        val=MemoryClips(labels(n_val, 1), seed=seed + 1) if with_val else None,
        test=MemoryClips(test_labels if test_labels is not None else labels(n_test, 2), seed=seed + 2, views=views),
        classes=CLASSES,
        info={"dataset": "memory", "note": "engine test fixture"},
    )


def make_spec(runs_dir: str | Path, *, epochs: int = 3, protocol: str = "unified", mixup: bool = False,
              batch_size: int = 8, seed: int = 0, model_overrides: tuple = (), variant: str = "full",
              **train_overrides) -> RunSpec:
    """A RunSpec for the test model writing into ``runs_dir`` (results in ``runs_dir/results``)."""
    knobs = dict(epochs=epochs, batch_size=batch_size, eval_batch_size=8, seed=seed, lr=3e-2, warmup_epochs=1,
                 mixup=mixup, device="cpu", log_every=1)
    train = protocol_preset(protocol, **{**knobs, **train_overrides})
    data = DataConfig(dataset="synth", frames=4, size=8)
    return RunSpec(TEST_MODEL, variant=variant, data=data, train=train, model_overrides=model_overrides,
                   runs_dir=str(runs_dir), results_dir=str(Path(runs_dir) / "results"))


def run_cli(*args: object) -> Any:
    """``ifdd-bench ARGS`` in this process; ``result.text`` is its output with every space and line
    break removed (rich wraps long lines mid-word), for message assertions."""
    from click.testing import CliRunner

    from cli import main as cli_main

    result = CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=False)
    result.text = "".join(result.output.split())
    return result


def csv_rows(path: Path) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def main(argv: list[str] | None = None) -> None:
    """Run one fit on the memory bundle; print one JSON line per progress event (flushed)."""
    from ifdd_bench.engine.loop import fit
    from ifdd_bench.engine import distributed as D

    parser = argparse.ArgumentParser()
    parser.add_argument("runs_dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--protocol", default="unified")
    parser.add_argument("--mixup", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-val", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=24)
    parser.add_argument("--step-delay", type=float, default=0.0, help="sleep per step event (to kill mid-epoch)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    def progress(event: dict) -> None:
        keep = {k: v for k, v in event.items() if isinstance(v, (int, float, str))}
        print(json.dumps(keep), flush=True)
        if event["kind"] == "step" and args.step_delay:
            import time
            time.sleep(args.step_delay)

    spec = make_spec(args.runs_dir, epochs=args.epochs, protocol=args.protocol, mixup=bool(args.mixup),
                     batch_size=args.batch_size)
    ctx = D.init_distributed("cpu")
    try:
        row = fit(spec, make_bundle(n_val=args.n_val, n_test=args.n_test), ctx=ctx, progress=progress)
    finally:
        D.shutdown(ctx)
    if ctx.is_main:
        print(json.dumps({"kind": "row", **{k: v for k, v in row.items() if isinstance(v, (int, float, str))}}),
              flush=True)


if __name__ == "__main__":
    main()
