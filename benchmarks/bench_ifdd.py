"""Speed and memory of IFDD: fused vs explicit attention (and optionally the authors' code).

Measures, at paper geometry by default (16x224x224, K=7, CPU):

* ``train``: one training step = forward (train mode), cross-entropy (+ the model's auxiliary
  losses), backward, AdamW step, ``zero_grad``; batch ``--batch`` (2).
* ``infer``: one eval-mode forward under ``torch.inference_mode``; batch ``--infer-batch`` (1).

Every configuration runs in its own subprocess, so the peak resident set size (``ru_maxrss``) of
one does not leak into another; times are the median of ``--iters`` steps after ``--warmup``
steps. The table ends with ratios against the ``explicit`` baseline measured in the same run
(and against the authors' implementation when ``--reference`` points to a local checkout of
``CyberPegasus/IFDD``; its extra imports ``loguru`` and ``einops`` can live in a folder given by
``--reference-deps``; nothing of it is copied into this project).

Examples::

    python benchmarks/bench_ifdd.py                          # train + infer, sdpa vs explicit
    python benchmarks/bench_ifdd.py --mode train --iters 5
    python benchmarks/bench_ifdd.py --model ifdd_tiny --batch 32 --mode train
    python benchmarks/bench_ifdd.py --reference /tmp/ifdd_ref --reference-deps /tmp/ifdd_ref_deps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# worker side (one configuration per process)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build_ours(spec: dict):
    from ifdd_bench import registry

    overrides = {"attn_impl": spec["impl"]}
    return registry.create_model(spec["model"], spec.get("variant"), frames=spec["frames"],
                                 num_classes=spec["classes"], overrides=overrides)


def _build_reference(spec: dict):
    """The authors' published model (DFEW configuration) from a local checkout."""
    ref_root = spec["reference"]
    for extra in filter(None, [spec.get("reference_deps"), ref_root]):
        sys.path.insert(0, extra)
    # import their sub-packages without running core/__init__.py (it pulls in cv2 and friends)
    for name in ("core", "core.model", "core.wave_methods", "core.utils"):
        mod = types.ModuleType(name)
        mod.__path__ = [str(Path(ref_root, *name.split(".")))]
        sys.modules[name] = mod
    from core.model.backbone import MFViT_FPN
    from core.model.embedNet import embedNet_light
    from core.model.head import headNet
    from core.model.net_main import MFViT_Main

    embed = embedNet_light(input_channel=3, input_time=spec["frames"], embed_dim=96, out_resolution=56)
    backbone = MFViT_FPN(type="MFViT_XS", use_stage=[2, 3], attention_dropout=0.0, use_WaveSF=True, SSL=True,
                         use_prompt=False, WaveSF_preUpdate=True, AdaptSplit=True, WaveNorm=True,
                         WavePool=False, facial=False)
    head = headNet(num_classes=spec["classes"], embed_dim=768, dropout=0.5)
    return MFViT_Main(embedNet=embed, backbone=backbone, head=head, use_WaveSF=True, SSL=True, facial=False)


def _loss(out, target):
    import torch.nn.functional as F

    from ifdd_bench.models.ifdd import lifting_loss
    from ifdd_bench.models.output import split_output

    if isinstance(out, tuple):  # the reference's training triple (logits, pool_a, detail)
        return F.cross_entropy(out[0], target) + lifting_loss(out[1], 0.1, "sum")
    logits, losses, _ = split_output(out)
    return F.cross_entropy(logits, target) + sum(losses.values())


def run_worker(spec: dict) -> dict:
    """Build one model, time ``spec["mode"]`` and return a flat result row."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = _build_reference(spec) if spec["impl"] == "reference" else _build_ours(spec)
    size = spec["img_size"]
    params = sum(p.numel() for p in model.parameters())
    times: list[float] = []
    if spec["mode"] == "train":
        batch = spec["batch"]
        x = torch.rand(batch, 3, spec["frames"], size, size)
        y = torch.arange(batch) % spec["classes"]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-3)
        model.train()
        rss_ready = _rss_mb()
        for i in range(spec["warmup"] + spec["iters"]):
            t0 = time.perf_counter()
            _loss(model(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= spec["warmup"]:
                times.append(time.perf_counter() - t0)
    else:
        batch = spec["infer_batch"]
        x = torch.rand(batch, 3, spec["frames"], size, size)
        model.eval()
        rss_ready = _rss_mb()
        with torch.inference_mode():
            for i in range(spec["warmup"] + spec["iters"]):
                t0 = time.perf_counter()
                model(x)
                if i >= spec["warmup"]:
                    times.append(time.perf_counter() - t0)
    return {
        "impl": spec["impl"], "mode": spec["mode"], "model": spec["model"], "batch": batch,
        "input": f"{spec['frames']}x{size}x{size}", "params": params,
        "median_s": statistics.median(times), "min_s": min(times), "times_s": [round(t, 4) for t in times],
        "rss_ready_mb": round(rss_ready, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }


# --------------------------------------------------------------------------------------------
# driver side


def _spawn(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {spec['impl']}/{spec['mode']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _print_table(rows: list[dict], baseline: str) -> None:
    print(f"{'mode':6} {'impl':10} {'batch':>5} {'input':>11} {'params':>11} {'median s':>9} {'min s':>8} "
          f"{'peak RSS MB':>11} {'speed-up':>8} {'mem ratio':>9}")
    for mode in ("train", "infer"):
        base = next((r for r in rows if r["mode"] == mode and r["impl"] == baseline), None)
        for r in (r for r in rows if r["mode"] == mode):
            speed = base["median_s"] / r["median_s"] if base else float("nan")
            mem = r["peak_rss_mb"] / base["peak_rss_mb"] if base else float("nan")
            print(f"{r['mode']:6} {r['impl']:10} {r['batch']:>5} {r['input']:>11} {r['params']:>11,} "
                  f"{r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['peak_rss_mb']:>11.0f} {speed:>7.2f}x {mem:>9.2f}")
    print(f"(speed-up = {baseline} median / row median; mem ratio = row peak RSS / {baseline} peak RSS; "
          "each row measured in its own process)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ifdd", help="registered IFDD preset (ifdd | ifdd_tiny)")
    ap.add_argument("--variant", default=None, help="ablation variant (default full)")
    ap.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    ap.add_argument("--batch", type=int, default=2, help="training batch")
    ap.add_argument("--infer-batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=None, help="default: the preset's size")
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--impls", default="explicit,sdpa", help="comma list of attn_impl values to compare")
    ap.add_argument("--reference", default=None, help="local checkout of the authors' code (paper geometry only)")
    ap.add_argument("--reference-deps", default=None, help="extra sys.path entry holding loguru and einops")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    if args.img_size is None:
        sys.path.insert(0, str(ROOT))
        from ifdd_bench import registry

        args.img_size = registry.resolve_config(args.model).img_size
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    if args.reference:
        impls.append("reference")
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    rows = []
    for mode in modes:
        for impl in impls:
            spec = {"impl": impl, "mode": mode, "model": args.model, "variant": args.variant, "batch": args.batch,
                    "infer_batch": args.infer_batch, "frames": args.frames, "img_size": args.img_size,
                    "classes": args.classes, "iters": args.iters, "warmup": args.warmup, "threads": args.threads,
                    "reference": args.reference, "reference_deps": args.reference_deps}
            row = _spawn(spec)
            rows.append(row)
            print(f"  {mode:5} {impl:10} median {row['median_s']:.3f} s  peak RSS {row['peak_rss_mb']:.0f} MB  "
                  f"times {row['times_s']}", flush=True)
    print()
    _print_table(rows, "reference" if args.reference else impls[0])
    if args.reference and len(impls) > 1:
        print()
        _print_table(rows, impls[0])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
