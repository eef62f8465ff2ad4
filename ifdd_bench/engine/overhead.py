"""How much of a training step the engine spends outside the model: a benchmark, not a test.

::

    python -m ifdd_bench.engine.overhead --model ifdd_tiny --steps 12 --workers 0,1

measures, in one process and on the same batches:

* ``bare``: the model's training step alone (:func:`~ifdd_bench.engine.step.train_step`:
  forward, loss, backward, AdamW) on batches already in memory, the baseline;
* ``engine (workers=N)``: the engine's :func:`~ifdd_bench.engine.loop.train_one_epoch` on a
  DataLoader over the same clips, with the progress callback on.

It prints, per setting, the seconds per step split into data wait / compute / bookkeeping, the
engine overhead share ``(data wait + bookkeeping) / step`` and the ratio of the engine's step
time to the bare step time. Timings are wall clock and depend on what else the machine runs.

:func:`model_consumption` (``ifdd-bench data bench --model``) times the same step on random clips:
the training clips/s a model eats on a device, to set beside the loader's clips/s (:func:`feeding`);
:func:`data_bench` is the whole ``data bench`` command (loader, decode and that model).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Subset

from ifdd_bench.config import DataConfig, protocol_preset
from ifdd_bench.engine import distributed as D
from ifdd_bench.engine.seeding import seed_everything, worker_init_fn
from ifdd_bench.engine.events import Reporter
from ifdd_bench.engine.loop import build_optimizer, train_one_epoch
from ifdd_bench.engine.step import train_step
from ifdd_bench.errors import BenchError
from ifdd_bench.events import Progress
from ifdd_bench.registry import build_from_config, resolve_config


def measure_overhead(model: str = "ifdd_tiny", variant: str = "full", *, steps: int = 12, warmup: int = 2,
                     workers: Sequence[int] = (0, 1), batch_size: int = 16, frames: int = 16, size: int = 64,
                     synth_preset: str = "default") -> list[dict[str, Any]]:
    """Rows ``{"setting", "step_s", "data_wait_s", "compute_s", "bookkeeping_s", "overhead_share",
    "vs_bare"}`` for the bare baseline and each worker count (see the module docstring)."""
    from ifdd_bench.data import build_datasets

    torch.manual_seed(0)
    data_cfg = DataConfig(dataset="synth", synth_preset=synth_preset, frames=frames, segments=frames, size=size)
    bundle = build_datasets(data_cfg, seed=0, protocol="unified")
    total = (warmup + steps) * batch_size
    clips = Subset(bundle.train, list(range(total)))
    cfg = protocol_preset("unified", batch_size=batch_size, device="cpu")
    model_cfg = resolve_config(model, variant, num_classes=len(bundle.classes), frames=frames, img_size=size)
    ctx = D.DistContext()

    def fresh():
        seed_everything(0)
        net = build_from_config(model, model_cfg)
        return net, build_optimizer(net, cfg)

    batches = list(DataLoader(clips, batch_size=batch_size))  # in memory for the bare baseline
    net, opt = fresh()
    net.train()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bare = []
    for k, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        out = train_step(net, x, y, opt, loss_fn)
        float(out.loss)  # the engine syncs on the loss too
        if k >= warmup:
            bare.append(time.perf_counter() - t0)
    bare_step = sum(bare) / len(bare)
    rows = [{"setting": "bare (batches in memory)", "step_s": bare_step, "data_wait_s": 0.0, "compute_s": bare_step,
             "bookkeeping_s": 0.0, "overhead_share": 0.0, "vs_bare": 1.0}]

    for n in workers:
        net, opt = fresh()
        loader = DataLoader(clips, batch_size=batch_size, num_workers=n, worker_init_fn=worker_init_fn,
                            drop_last=True)
        warm = DataLoader(Subset(clips, list(range(warmup * batch_size))), batch_size=batch_size)
        train_one_epoch(net, warm, opt, loss_fn, mixer=None, scaler=None, autocast=contextlib.nullcontext, ctx=ctx, epoch=0,
                        lr=cfg.lr, grad_clip=0.0, channels_last=False, report=Reporter(None), log_every=10,
                        last_good="-")
        events: list[dict] = []
        stats = train_one_epoch(net, loader, opt, loss_fn, mixer=None, scaler=None, autocast=contextlib.nullcontext, ctx=ctx,
                                epoch=1, lr=cfg.lr, grad_clip=0.0, channels_last=False,
                                report=Reporter(events.append), log_every=1, last_good="-")
        per = {k: stats[k] / stats["steps"] for k in ("data_wait", "compute", "bookkeeping")}
        step = stats["wall"] / stats["steps"]
        rows.append({"setting": f"engine (workers={n})", "step_s": step, "data_wait_s": per["data_wait"],
                     "compute_s": per["compute"], "bookkeeping_s": per["bookkeeping"],
                     "overhead_share": (per["data_wait"] + per["bookkeeping"]) / step, "vs_bare": step / bare_step})
    return rows


def model_consumption(model: str = "ifdd_tiny", *, size: int | None = None, frames: int | None = None,
                      batch: int = 8, steps: int = 3, variant: str = "full", device: str = "cpu",
                      precision: str | None = None, compile: bool = False) -> dict[str, Any]:
    """Training clips/s of a registered model on ``device``: the median of ``steps`` timed training
    steps after one warm-up, measured by :func:`ifdd_bench.engine.latency.measure` (the engine's
    :func:`~ifdd_bench.engine.step.train_step`: forward, losses, backward, AdamW; CUDA events on a GPU).

    ``size`` / ``frames`` default to the model's own geometry, ``precision`` to fp32 on the CPU and
    bf16 on CUDA. Raises ``ConfigError`` for an unknown model or a device that is not there.
    """
    from ifdd_bench.engine.latency import BenchSpec, measure, resolve_device

    dev = resolve_device(device)  # "auto" -> cuda when torch sees one, else cpu
    device = str(dev)
    precision = precision or ("bf16" if dev.type == "cuda" else "fp32")
    row = measure(BenchSpec(model=model, variant=variant, batch=batch, frames=frames, size=size, num_classes=7,
                            device=device, precision=precision, mode="train", compile=compile, warmup=1,
                            iterations=steps, cudnn_benchmark=dev.type == "cuda"))
    secs = row["latency_median_ms"] / 1000.0
    return {"model": model, "variant": variant, "geometry": f"{row['frames']}x{row['height']}x{row['width']}",
            "batch": batch, "device": row["device"], "device_name": row["device_name"], "precision": precision,
            "compile": compile, "train_clips_per_s": batch / secs, "step_s": secs, "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}


def feeding(loader: list[dict[str, Any]], model: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each measured model, the fastest loader setting at the model's clip geometry and the ratio
    ``loader clips/s / model clips/s`` (>= 1: the loader keeps up; < 1: the model waits for data)."""
    out = []
    for item in model:
        same = [r for r in loader if r["geometry"] == item["geometry"]]
        best = max(same, key=lambda r: r["clips_per_s"], default=None)
        out.append({"model": item["model"], "geometry": item["geometry"], "device": item["device"],
                    "precision": item["precision"], "model_clips_per_s": item["train_clips_per_s"],
                    "loader": (f"{best['decoder']}, {best['workers']} workers, {best['stored']}px frames"
                               if best else "no loader row at this geometry"),
                    "loader_clips_per_s": best["clips_per_s"] if best else None,
                    "loader_over_model": best["clips_per_s"] / item["train_clips_per_s"] if best else None})
    return out


@dataclass
class DataBench:
    """What ``ifdd-bench data bench`` measured: loader rows, decode rows, the model's consumption
    (``None`` when skipped), why it was skipped (``""`` when it was not), and how the fastest loader
    compares with the model (:func:`feeding`)."""

    loader: list[dict[str, Any]]
    decode: list[dict[str, Any]]
    model: list[dict[str, Any]] | None = None
    model_skipped: str = ""
    feed: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"loader": self.loader, "decode": self.decode, "model": self.model, "feed": self.feed}


def data_bench(*, clips: int = 42, workers: tuple[int, ...] = (0, 1, 2),
               decoders: tuple[str, ...] = ("pil", "torchvision", "auto"), repeats: int = 1,
               model: str | None = "ifdd_tiny", device: str = "cpu", precision: str | None = None,
               batch: int = 8, geometries: tuple[tuple[int, int], ...] | None = None, decode: bool = True,
               progress: Progress | None = None) -> DataBench:
    """Loader throughput (:func:`~ifdd_bench.data.loader_bench.run_loader_bench`), the decode
    micro-benchmark (``decode``) and, unless ``model`` is ``None`` or ``"none"``, that model's training
    clips/s at its own geometry on ``device`` (:func:`model_consumption`; an unknown model is skipped
    with the reason) set against the fastest loader at that geometry (:func:`feeding`)."""
    from ifdd_bench.data.loader_bench import GEOMETRIES, decode_microbench, run_loader_bench
    from ifdd_bench.engine.latency import resolve_device

    resolve_device(device)  # no GPU for --device cuda: refused before anything is measured
    rows = run_loader_bench(clips=clips, workers=workers, decoders=decoders, repeats=repeats, progress=progress,
                            geometries=geometries or GEOMETRIES)
    result = DataBench(rows, decode_microbench() if decode else [])
    if model not in (None, "none"):
        try:
            result.model = [model_consumption(model, device=device, precision=precision, batch=batch)]
        except BenchError as err:
            result.model_skipped = err.message
        else:
            result.feed = feeding(rows, result.model)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (prints a table and the rows as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ifdd_tiny")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", default="0,1")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args(argv)
    rows = measure_overhead(args.model, args.variant, steps=args.steps, batch_size=args.batch_size,
                            workers=[int(w) for w in args.workers.split(",")], size=args.size, frames=args.frames)
    print(f"{'setting':28s} {'step s':>8s} {'data wait':>10s} {'compute':>8s} {'bookkeep':>9s} "
          f"{'overhead':>9s} {'vs bare':>8s}")
    for r in rows:
        print(f"{r['setting']:28s} {r['step_s']:8.3f} {r['data_wait_s']:10.4f} {r['compute_s']:8.3f} "
              f"{r['bookkeeping_s']:9.5f} {100 * r['overhead_share']:8.2f}% {r['vs_bare']:8.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
