"""Speed and memory of IFDD: fused vs explicit attention (and optionally the authors' code).

Measures, at paper geometry by default (16x224x224, K=7, CPU, torch's default thread count):

* ``train``: one training step, the engine's (``ifdd_bench.engine.step.train_step``): forward
  (train mode), cross-entropy (+ the model's auxiliary losses), ``zero_grad``, backward, AdamW
  step, then the gradients freed; batch ``--batch`` (2).
* ``infer``: one eval-mode forward under ``torch.inference_mode``; batch ``--infer-batch`` (1).

Time: all configurations are built in ONE process and their steps are interleaved round by
round (A B C, B C A, C A B, ...), so a machine whose load drifts slows every configuration alike;
the table reports each one's median step and the median of the per-round ratios against the
baseline. Memory: every configuration also runs alone in a fresh subprocess (warm-up + one step)
that reports its peak resident set size (``ru_maxrss``), so one model's memory never mixes with
another's.

Configurations: every ``attn_impl`` in ``--impls`` (default ``explicit,sdpa``), plus the authors'
implementation when ``--reference`` points to a local checkout of ``CyberPegasus/IFDD`` (its extra
imports ``loguru`` and ``einops`` can live in a folder given by ``--reference-deps``; nothing of it
is copied into this project). The baseline of the ratios is ``reference`` when present, else the
first impl.

Examples::

    python benchmarks/bench_ifdd.py                          # train + infer, explicit vs sdpa
    python benchmarks/bench_ifdd.py --mode train --rounds 5
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# building and stepping one configuration


def _build_ours(spec: dict):
    from ifdd_bench import registry

    return registry.create_model(spec["model"], spec.get("variant"), frames=spec["frames"],
                                 num_classes=spec["classes"], img_size=spec["img_size"],
                                 overrides={"attn_impl": spec["impl"]})


def _build_reference(spec: dict):
    """The authors' published model (DFEW configuration) from a local checkout."""
    from make_authors_fixture import build_reference, import_reference

    import torch

    from ifdd_bench.models.ifdd import lifting_loss
    from ifdd_bench.models.output import ModelOutput

    class Reference(torch.nn.Module):
        """The authors' model behind our output convention, so that the same training step drives it:
        its training triple (logits, pool_a, detail) becomes logits + the lifting loss on pool_a."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            if isinstance(out, tuple):
                return ModelOutput(out[0], {"lift": lifting_loss(out[1], 0.1, "sum")})
            return out

    ref = import_reference(spec["reference"], spec.get("reference_deps"))
    return Reference(build_reference(ref, use_issm=True, use_ladm=True, frames=spec["frames"],
                                     classes=spec["classes"]))


class Runner:
    """One configuration with its model, optimiser and fixed input; ``step()`` runs one timed unit."""

    def __init__(self, spec: dict):
        import torch

        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        torch.manual_seed(0)
        self.spec = spec
        self.model = _build_reference(spec) if spec["impl"] == "reference" else _build_ours(spec)
        self.params = sum(p.numel() for p in self.model.parameters())
        size, frames = spec["img_size"], spec["frames"]
        gen = torch.Generator().manual_seed(0)
        if spec["mode"] == "train":
            self.batch = spec["batch"]
            self.x = torch.rand(self.batch, 3, frames, size, size, generator=gen)
            self.y = torch.arange(self.batch) % spec["classes"]
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=1e-3)
            self.model.train()
        else:
            self.batch = spec["infer_batch"]
            self.x = torch.rand(self.batch, 3, frames, size, size, generator=gen)
            self.model.eval()

    def step(self) -> tuple[float, float]:
        """Run one step; return (wall seconds, process CPU seconds)."""
        import torch
        import torch.nn.functional as F

        from ifdd_bench.engine.step import train_step

        t0, c0 = time.perf_counter(), time.process_time()
        if self.spec["mode"] == "train":
            train_step(self.model, self.x, self.y, self.opt, F.cross_entropy)
            self.opt.zero_grad(set_to_none=True)  # gradients freed after the step, as before the shared step
        else:
            with torch.inference_mode():
                self.model(self.x)
        return time.perf_counter() - t0, time.process_time() - c0


# --------------------------------------------------------------------------------------------
# timing (one process, interleaved) and memory (one subprocess per configuration)


def time_interleaved(specs: list[dict], rounds: int, warmup: int, baseline: str) -> list[dict]:
    """Build every configuration, warm each up, then time ``rounds`` rotating rounds."""
    import torch

    runners = [Runner(s) for s in specs]
    for r in runners:
        for _ in range(warmup):
            r.step()
    walls: dict[str, list[float]] = {s["impl"]: [] for s in specs}
    cpus: dict[str, list[float]] = {s["impl"]: [] for s in specs}
    for i in range(rounds):
        order = runners[i % len(runners):] + runners[:i % len(runners)]
        for r in order:
            wall, cpu = r.step()
            walls[r.spec["impl"]].append(wall)
            cpus[r.spec["impl"]].append(cpu)
        print(f"  round {i + 1}/{rounds}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in walls.items()), flush=True)
    rows = []
    for r in runners:
        impl = r.spec["impl"]
        ratios = [b / w for b, w in zip(walls[baseline], walls[impl])]
        rows.append({
            "impl": impl, "mode": r.spec["mode"], "model": r.spec["model"], "batch": r.batch,
            "input": f"{r.spec['frames']}x{r.spec['img_size']}x{r.spec['img_size']}", "params": r.params,
            "median_s": statistics.median(walls[impl]), "min_s": min(walls[impl]),
            "cpu_s": statistics.median(cpus[impl]), "times_s": [round(t, 3) for t in walls[impl]],
            "speedup_vs_" + baseline: statistics.median(ratios),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        })
    return rows


def peak_rss_worker(spec: dict) -> dict:
    """Subprocess body: one configuration alone, warm-up + one step, peak RSS in MB."""
    runner = Runner(spec)
    for _ in range(spec["warmup"] + 1):
        runner.step()
    return {"impl": spec["impl"], "mode": spec["mode"], "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _peak_rss_mb() -> float:
    """Peak RSS of this process image: ``VmHWM`` (``ru_maxrss`` would include the parent's peak at fork)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spawn_rss(spec: dict) -> float:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"memory worker {spec['impl']}/{spec['mode']} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1])["peak_rss_mb"]


def _print_table(rows: list[dict], baseline: str) -> None:
    key = "speedup_vs_" + baseline
    print(f"{'mode':6} {'impl':10} {'batch':>5} {'input':>11} {'params':>11} {'median s':>9} {'min s':>8} "
          f"{'CPU s':>7} {'speed-up':>8} {'peak RSS MB':>11} {'mem ratio':>9}")
    for mode in ("train", "infer"):
        base = next((r for r in rows if r["mode"] == mode and r["impl"] == baseline), None)
        for r in (r for r in rows if r["mode"] == mode):
            mem = r["peak_rss_mb"] / base["peak_rss_mb"] if base else float("nan")
            print(f"{r['mode']:6} {r['impl']:10} {r['batch']:>5} {r['input']:>11} {r['params']:>11,} "
                  f"{r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['cpu_s']:>7.2f} {r[key]:>7.2f}x "
                  f"{r['peak_rss_mb']:>11.0f} {mem:>9.2f}")
    print(f"(speed-up: median over rounds of {baseline}'s step time / the row's, steps interleaved in one "
          f"process; mem ratio: row peak RSS / {baseline}'s, each measured alone in a fresh process; "
          "CPU s: process CPU time per step, all threads)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ifdd", help="registered IFDD preset (ifdd | ifdd_tiny)")
    ap.add_argument("--variant", default=None, help="ablation variant (default full)")
    ap.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    ap.add_argument("--batch", type=int, default=2, help="training batch")
    ap.add_argument("--infer-batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=None, help="default: the preset's size")
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (each times every configuration once)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--impls", default="explicit,sdpa", help="comma list of attn_impl values to compare")
    ap.add_argument("--reference", default=None, help="local checkout of the authors' code (paper geometry only)")
    ap.add_argument("--reference-deps", default=None, help="extra sys.path entry holding loguru and einops")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration peak-RSS subprocesses")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(peak_rss_worker(json.loads(args.worker))))
        return 0

    if args.img_size is None:
        from ifdd_bench import registry

        args.img_size = registry.resolve_config(args.model).img_size
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    if args.reference:
        impls.append("reference")
    baseline = "reference" if args.reference else impls[0]
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    rows = []
    for mode in modes:
        specs = [{"impl": impl, "mode": mode, "model": args.model, "variant": args.variant, "batch": args.batch,
                  "infer_batch": args.infer_batch, "frames": args.frames, "img_size": args.img_size,
                  "classes": args.classes, "warmup": args.warmup, "threads": args.threads,
                  "reference": args.reference, "reference_deps": args.reference_deps} for impl in impls]
        peaks = {}
        for spec in specs:  # memory first, each configuration alone in a fresh process
            peaks[spec["impl"]] = float("nan") if args.no_memory else _spawn_rss(spec)
            print(f"  {mode:5} {spec['impl']:10} peak RSS {peaks[spec['impl']]:.0f} MB", flush=True)
        print(f"{mode}: timing {', '.join(impls)} interleaved in one process", flush=True)
        mode_rows = time_interleaved(specs, args.rounds, args.warmup, baseline)
        for row in mode_rows:
            row["peak_rss_mb"] = peaks[row["impl"]]
        rows.extend(mode_rows)
    print()
    _print_table(rows, baseline)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
