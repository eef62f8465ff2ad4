"""What ``ifdd-bench`` prints: rich progress displays, tables of the library's results, ``--json``.

Imported by ``cli.py`` only (docs: /work/shared/design/architecture.md, section 1). Every function
here takes what a library call returned (or its progress events) and prints it; none computes a
result, reads a results file or imports click. Torch-using library modules are imported inside
functions only, so that ``ifdd-bench report`` never loads torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from ifdd_bench.atomic import json_text
from ifdd_bench.results import EVALS_CSV, PROBES_CSV

console = Console()
err_console = Console(stderr=True)


def error(err: BaseException) -> None:
    """A user error on stderr, its text taken literally (``pip install 'ifdd-bench[slurm]'`` is not markup)."""
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)


def wide_console() -> Console:
    """The shared console in a terminal; a 160-column one when output is piped (tables stay readable)."""
    return console if console.is_terminal else Console(width=160)


def fmt(value: Any, digits: int = 2) -> str:
    """A number with thousands separators and ``digits`` decimals; ``-`` for empty or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else "-"
    return "-" if number != number else f"{number:,.{digits}f}"


def print_json(data: Any) -> None:
    """``--json`` output: ``data`` as :func:`ifdd_bench.atomic.json_text` writes JSON files (nan as null,
    so the output is valid JSON), flushed."""
    sys.stdout.write(json_text(data))
    sys.stdout.flush()


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


def _pct(value: Any) -> str:
    return "-" if value is None or value != value else f"{100 * float(value):.2f}"


# ============================================================================================
# models


def models(rows: list[dict[str, Any]], as_json: bool = False) -> None:
    """``ifdd-bench models``: one line per registered model."""
    if as_json:
        return print_json(rows)
    table = Table(title="registered models")
    for col in ("model", "family", "variants", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["model"], row["family"], ", ".join(row["variants"]), row["description"])
    console.print(table)


# ============================================================================================
# data: check, bench, import, synth, preview, probe


class _Bar:
    """A progress callback whose rich ``Progress`` (``self.bar``) is live while it is entered."""

    bar: Progress

    def __enter__(self) -> Any:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


class DataBar(_Bar):
    """Rich progress bar fed by ``{"kind": "data_progress", "stage", "done", "total"}`` events."""

    def __init__(self, out: Console):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=out, transient=True)
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: dict) -> None:
        if event.get("kind") != "data_progress":
            return
        stage = str(event.get("stage", "data"))
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=event.get("total"))
        self.bar.update(self.tasks[stage], completed=event.get("done", 0), total=event.get("total"))


def _check_table(report: Any) -> Table:
    """Per fold/split clip counts against the official numbers, and the rules applied."""
    table = Table(title=f"{report.dataset} at {report.root}  (frames: {report.frame_source}, clip length "
                        f"{report.clip_len})", title_justify="left")
    for col in ("fold", "split", "clips", "official", "match"):
        table.add_column(col, justify="right" if col in ("clips", "official") else "left")
    table.add_column("rules applied", overflow="fold")
    for row in report.rows:
        mark = {True: "[green]yes[/]", False: "[yellow]no[/]", None: "-"}[row.matches]
        clips = "[red]missing[/]" if row.clips is None else str(row.clips)
        rules = ", ".join(f"{k} {v}" for k, v in sorted(row.counts.items()))
        table.add_row(str(row.fold), row.split, clips, _opt(row.expected), mark if row.clips is not None else "", rules)
    return table


def _class_table(report: Any) -> Table:
    """Class counts per fold as train/test, next to the official counts where they are known."""
    table = Table(title="class counts (train/test)", title_justify="left")
    table.add_column("class")
    folds = sorted({r.fold for r in report.rows if r.class_counts is not None})
    by_key = {(r.fold, r.split): r for r in report.rows}
    for fold in folds:
        table.add_column(f"fold {fold}", justify="right")
        if any(by_key.get((fold, s)) and by_key[(fold, s)].expected_class_counts for s in ("train", "test")):
            table.add_column(f"official {fold}", justify="right", style="dim")
    for k, name in enumerate(report.classes):
        cells = [name]
        for fold in folds:
            got, want, known = [], [], False
            for split in ("train", "test"):
                row = by_key.get((fold, split))
                value = None if row is None or row.class_counts is None else row.class_counts[k]
                expected = None if row is None or row.expected_class_counts is None else row.expected_class_counts[k]
                known = known or expected is not None
                text = _opt(value)
                got.append(text if expected in (None, value) else f"[yellow]{text}[/]")
                want.append(_opt(expected))
            cells.append("/".join(got))
            if known:
                cells.append("/".join(want))
        table.add_row(*cells)
    return table


def _issues_table(title: str, issues: dict, style: str) -> Table:
    table = Table(title=title, title_justify="left", title_style=style)
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("first items", overflow="fold")
    for kind, items in sorted(issues.items()):
        shown = "\n".join(items[:3]) + (f"\n... and {len(items) - 3} more" if len(items) > 3 else "")
        table.add_row(kind, str(len(items)), shown)
    return table


def check_report(report: Any, as_json: bool = False) -> None:
    """``data check``: counts against the official numbers, class counts, warnings, problems, verdict."""
    if as_json:
        return print_json(report.to_dict())
    if report.rows:
        console.print(_check_table(report))
    if any(r.class_counts is not None for r in report.rows):
        console.print(_class_table(report))
    total = f"{report.unique_clips} distinct clips"
    if report.expected_total is not None:
        total += f" (official {report.expected_total})"
    console.print(f"{total}; {report.frames_scanned} frame files scanned ({report.image_scan})")
    if report.warnings:
        console.print(_issues_table("warnings (a documented rule applies)", report.warnings, "yellow"))
    if report.problems:
        console.print(_issues_table("problems (training would stop)", report.problems, "bold red"))
    verdict = "[bold green]OK[/]: ready to train" if report.ok else "[bold red]FAILED[/]: fix the problems above"
    console.print(verdict)


def data_bench(result: Any, as_json: bool = False) -> None:
    """``data bench``: why the model was skipped (if it was), then the loader and decode tables and
    the model's training clips/s (or all rows as JSON)."""
    if result.model_skipped:
        err_console.print(f"[yellow]model consumption skipped:[/] {result.model_skipped}")
    if as_json:
        return print_json(result.to_dict())
    rows = result.loader
    table = Table(title=f"loader throughput, {rows[0]['clips']} clips, batch {rows[0]['batch']}, segment sampling + "
                        "unified augmentation (ratio vs Pillow / 0 workers, same run)", title_justify="left")
    for col in ("clip", "frames on disk", "decoder", "workers", "clips/s", "ratio"):
        table.add_column(col, justify="right" if col in ("workers", "clips/s", "ratio") else "left")
    for row in rows:
        decoder = row["decoder"] if not row["cached"] else (
            f"{'in-memory cache' if row['decoder'] == 'cache' else 'disk cache (memmap)'} "
            f"(build {row['cache_build_clips_per_s']:.0f} clips/s)")
        table.add_row(row["geometry"], f"{row['stored']}px JPEG", decoder, str(row["workers"]),
                      f"{row['clips_per_s']:.1f}", f"{row['ratio']:.2f}x")
    console.print(table)
    decode = Table(title="decode + resize, one thread, best of 15 (ms per frame; speed-up vs Pillow)",
                   title_justify="left")
    for col in ("frame", "from", "pil", "torchvision", "auto"):
        decode.add_column(col, justify="left" if col in ("frame", "from") else "right")
    for geometry, stored in dict.fromkeys((r["geometry"], r["stored"]) for r in result.decode):
        cells = {r["decoder"]: r for r in result.decode if (r["geometry"], r["stored"]) == (geometry, stored)}
        decode.add_row(geometry, f"{stored}px JPEG", *[f"{cells[d]['ms_per_frame']:.2f} ({cells[d]['speedup_vs_pil']:.2f}x)"
                                                       for d in ("pil", "torchvision", "auto")])
    console.print(decode)
    for item in result.model or []:
        where = (f"{item['device_name']}" if item["device"] == "cuda" else
                 f"CPU, {item['torch_threads']} threads, OMP_WAIT_POLICY {item['omp_wait_policy']}")
        console.print(f"{item['model']} training step ({item['geometry']}, batch {item['batch']}, {item['precision']}, "
                      f"{where}): [bold]{item['train_clips_per_s']:.1f} clips/s[/]")
    for feed in result.feed or []:
        if feed["loader_over_model"] is None:
            console.print(f"{feed['model']} at {feed['geometry']}: {feed['loader']}")
            continue
        verdict = "keeps up" if feed["loader_over_model"] >= 1 else "the model waits for data"
        console.print(f"fastest loader at {feed['geometry']} ({feed['loader']}): {feed['loader_clips_per_s']:.1f} "
                      f"clips/s = [bold]{feed['loader_over_model']:.2f}x[/] what {feed['model']} consumes "
                      f"({verdict})")


def imported(summary: dict[str, Any], dataset: str, data_root: Path, fold: int) -> None:
    """``data import``: the clips of each split, the list written, and how to train on it."""
    for split, item in summary.items():
        extra = ", ".join(f"{k} {v}" for k, v in item["counts"].items())
        console.print(f"{split}: {item['clips']} clips -> {item['file']}" + (f" ({extra})" if extra else ""))
    console.print(f"train with [bold]--dataset {dataset} --data-root {data_root} --fold {fold}[/]")


@contextlib.contextmanager
def synth_bar(cfg: Any) -> Iterator[Callable[[int, int], None]]:
    """A transient SynthDFER clip counter; yields the ``progress(done, total)`` callback."""
    with Progress(TextColumn("SynthDFER {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("clips"), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(cfg.preset, total=cfg.clips)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def synth_ready(job: Any) -> None:
    console.print(f"SynthDFER {job.cfg.preset} already generated: [bold]{job.root}[/]")


def synth_written(written: Any) -> None:
    """``data synth``: the folder, size and speed of a generated dataset, its classes and folds."""
    cfg, meta, seconds = written.cfg, written.meta, written.seconds
    console.print(f"wrote [bold]{written.root}[/]: {cfg.clips} clips ({meta['num_clip_folders']} folders) x {cfg.frames} "
                  f"frames x {cfg.size}x{cfg.size} in {seconds:.1f} s ({cfg.clips / seconds:.1f} clips/s)")
    console.print("class counts: " + ", ".join(f"{k} {v}" for k, v in meta["class_counts"].items()))
    console.print("folds (train/test): " + ", ".join(f"{k}: {v['train']}/{v['test']}" for k, v in meta["folds"].items()))


def preview_written(path: Path, cfg: Any, per_class: int) -> None:
    console.print(f"wrote [bold]{path}[/]: {per_class} clips per class of SynthDFER {cfg.preset} "
                  f"({cfg.frames} frames, {cfg.size}x{cfg.size}); red frame = apex, yellow bar = emotion intensity")


def probe_table(cfg: Any, result: dict[str, dict[str, float]]) -> None:
    """``data probe``: WAR / UAR of the linear probe per view, in the probe's order."""
    from ifdd_bench.data.synth.probe import VIEWS

    table = Table(title=f"SynthDFER {cfg.preset}: linear probe, {cfg.clips} clips",
                  caption="expression parameters, 70 % train / 30 % test; chance 1/7 = 0.143")
    for col in ("view", "WAR", "UAR"):
        table.add_column(col, justify="left" if col == "view" else "right")
    for name in VIEWS:
        table.add_row(name, f"{result[name]['war']:.3f}", f"{result[name]['uar']:.3f}")
    console.print(table)


# ============================================================================================
# run train, pretrain, predict, eval, runs migrate


class TrainDisplay:
    """Render engine progress events: a live bar per epoch (loss, lr, clips/s, ETA) and one line
    per finished epoch above it."""

    def __init__(self, progress: Any):
        self.progress = progress
        self.task = progress.add_task("starting", total=None, loss=float("nan"), lr=float("nan"), cps=0.0)
        self.data_task = None

    def __call__(self, event: dict) -> None:
        kind = event.get("kind")
        out = self.progress.console
        if kind == "data_progress":
            if self.data_task is None:
                self.data_task = self.progress.add_task(str(event.get("stage", "data")), total=None,
                                                        loss=float("nan"), lr=float("nan"), cps=0.0)
            self.progress.update(self.data_task, description=str(event.get("stage", "data")),
                                 completed=event.get("done", 0), total=event.get("total") or None)
        elif kind == "start":
            if self.data_task is not None:
                self.progress.remove_task(self.data_task)
                self.data_task = None
            out.print(f"[bold]{event['run_id']}[/]  {event['params']:,} params  {event['device']}"
                      f"{' x' + str(event['world_size']) if event['world_size'] > 1 else ''} {event['precision']}  "
                      f"clips train/val/test {event['train_clips']}/{event['val_clips']}/{event['test_clips']}  "
                      f"-> {event['run_dir']}", highlight=False)
        elif kind == "resume":
            out.print(f"[cyan]resuming[/] from {event['path']} (epochs 0..{event['epoch']} done)", highlight=False)
        elif kind == "warning":
            out.print(f"[bold yellow]warning:[/] {event['message']}", highlight=False)
        elif kind == "epoch_start":
            self.progress.update(self.task, description=f"epoch {event['epoch'] + 1}/{event['epochs']}",
                                 completed=0, total=event["steps"], lr=event["lr"])
            self.progress.reset(self.task, total=event["steps"])
        elif kind == "step":
            self.progress.update(self.task, completed=event["step"] + 1, loss=event["loss"], lr=event["lr"],
                                 cps=event["clips_per_s"])
        elif kind == "epoch_end":
            val = "" if event["val_uar"] != event["val_uar"] else (
                f"val UAR {100 * event['val_uar']:5.1f} WAR {100 * event['val_war']:5.1f}  ")
            star = "[green]*[/]" if event["selected"] else " "
            out.print(f"{star}epoch {event['epoch'] + 1:>3}  loss {event['train_loss']:.4f}  lr {event['lr']:.2e}  "
                      f"{val}test UAR {100 * event['test_uar']:5.1f} WAR {100 * event['test_war']:5.1f}  "
                      f"{event['epoch_s']:.1f}s  overhead {100 * event['overhead_share']:.0f}%", highlight=False)


class TrainProgress(_Bar):
    """The progress callback of ``run train``: a transient bar (on stderr with ``--json``, off on
    ranks other than 0 under torchrun) that keeps the engine's ``done`` event in :attr:`done`."""

    def __init__(self, as_json: bool):
        self.main_rank = int(os.environ.get("RANK", "0")) == 0
        self.done: dict = {}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"),
                   TextColumn("{task.fields[cps]:.1f} clips/s"), TimeRemainingColumn())
        self.bar = Progress(*columns, console=err_console if as_json else console, transient=True,
                            disable=not self.main_rank)

    def __enter__(self) -> "TrainProgress":
        super().__enter__()
        self.display = TrainDisplay(self.bar)
        return self

    def __call__(self, event: dict) -> None:
        if event.get("kind") == "done":
            self.done.update(event)
        self.display(event)


def train_result(row: dict, progress: TrainProgress, as_json: bool = False) -> None:
    """One screen: headline numbers with how they were selected, per-class recall, confusion matrix
    (from the engine's ``done`` event, which carries them for a finished run too); or the row as
    JSON. Nothing on ranks other than 0."""
    from rich.columns import Columns
    from rich.panel import Panel

    if not progress.main_rank:
        return
    if as_json:
        return print_json(row)
    done = progress.done
    per_class, confusion, classes = done.get("per_class"), done.get("confusion"), done.get("classes")
    sel = row["selection"]
    how = ("selected on validation UAR" if sel == "val_uar"
           else "selected on TEST WAR (reference protocol: model selection on the test fold)")
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("")
    table.add_column("UAR %", justify="right")
    table.add_column("WAR %", justify="right")
    table.add_row(f"[bold]test, epoch {int(row['selected_epoch']) + 1} ({how})[/]", _pct(row["uar"]), _pct(row["war"]))
    if sel == "val_uar":
        table.add_row("validation, same epoch", _pct(row["val_uar"]), _pct(row["val_war"]))
    table.add_row(f"test, last epoch ({row['epochs']})", _pct(row["last_uar"]), _pct(row["last_war"]))
    table.add_row("test, best epoch on test (optimistic, literature-style)", _pct(row["best_test_uar"]),
                  _pct(row["best_test_war"]))
    facts = (f"{row['model']}:{row['variant']} on {row['dataset']} fold {row['fold']}, seed {row['seed']}, "
             f"protocol {row['protocol']} (train hash {row['train_hash']})\n"
             f"{int(row['params']):,} params, {row['frames']}x{row['size']}², {row['num_classes']} classes, "
             f"clips {row['train_clips']}/{row['val_clips']}/{row['test_clips']}, "
             f"{float(row['train_seconds']):.0f}s on {row['device']}"
             + (f", engine overhead {100 * float(row['overhead_share']):.1f}% of step time"
                if row.get("overhead_share") not in (None, "") else "")
             + f"\nrun folder {done['run_dir']}"
             + ("  [dim](finished earlier; stored result)[/]" if done.get("cached") else ""))
    console.print(Panel(table, title="result", expand=False))
    console.print(facts, highlight=False)
    parts = []
    if per_class:
        parts.append(recall_table(per_class, "per-class recall (test)"))
    if confusion and classes and len(classes) <= 12:
        cm = Table(title="confusion (rows true, cols predicted)", box=None, header_style="bold")
        cm.add_column("")
        for name in classes:
            cm.add_column(name[:4], justify="right")
        for name, counts in zip(classes, confusion):
            cm.add_row(name[:8], *[str(c) for c in counts])
        parts.append(cm)
    if parts:
        console.print(Columns(parts, padding=(0, 4)))


class PretrainProgress(_Bar):
    """The progress callback of ``run pretrain``: render and epoch bars, one line per epoch."""

    def __init__(self, out: Path):
        self.out = out
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console)
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: dict) -> None:
        bar, tasks, kind = self.bar, self.tasks, event["kind"]
        if kind == "render":
            if "render" not in tasks:
                tasks["render"] = bar.add_task("render pretext clips", total=event["total"], info="")
            bar.update(tasks["render"], completed=event["done"])
        elif kind == "step":
            name = f"epoch {event['epoch'] + 1}/{event['epochs']}"
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=event["steps"], info="")
            bar.update(tasks[name], completed=event["step"], info=f"train mse {event['loss']:.3f}")
        elif kind == "epoch":
            bar.console.print(f"epoch {event['epoch'] + 1}: train mse {event['train_mse']:.3f}, val mse "
                              f"{event['val_mse']:.3f}, val R² {event['val_r2_mean']:.3f} ({event['seconds']:.0f} s)")
        elif kind == "resumed":
            bar.console.print(f"resuming after epoch {event['epoch']} from {self.out}.state.pt")


def pretrained(out: Path, meta: dict[str, Any]) -> None:
    """``run pretrain``: the weight file, its hash, the held-out R² per target and how to use it."""
    r2 = meta["history"][-1]["val_r2"]
    console.print(f"wrote [bold]{out}[/] (sha256 {meta['sha256'][:12]}); held-out R² per target: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r2.items()))
    console.print(f"use it with: ifdd-bench run ablation --set model.pretrained={out}")


def predictions(result: dict[str, Any], top: int, as_json: bool = False) -> None:
    """``predict``: one line per clip with its label, probability and the ``top`` classes."""
    if as_json:
        return print_json(result)
    table = Table(title=f"{result['model']}:{result['variant']} epoch {int(result['epoch']) + 1} "
                        f"({result['checkpoint']})")
    table.add_column("clip")
    table.add_column("prediction")
    table.add_column("p", justify="right")
    table.add_column(f"top {top}")
    cropped = any(pred.get("face") for pred in result["predictions"])
    if cropped:
        table.add_column("face found in", justify="right")
    for pred in result["predictions"]:
        face = pred.get("face")
        cells = [pred["path"], pred["label"], f"{pred['prob']:.3f}",
                 ", ".join(f"{name} {p:.3f}" for name, p in pred["top"][:top])]
        if cropped:
            cells.append(f"{face['detected']}/{face['examined']} frames" if face else "not cropped")
        table.add_row(*cells)
    console.print(table)


def crop_summary(summary: Any, as_json: bool = False) -> None:
    """``data crop``: clips cropped, already there, and the ones skipped with the reason."""
    if as_json:
        return print_json(summary.as_dict())
    console.print(f"{summary.total} clip(s) under {summary.input_dir}: {len(summary.cropped)} cropped, "
                  f"{len(summary.finished_before)} already done, {len(summary.failed)} skipped", highlight=False)
    for name, why in list(summary.failed.items())[:10]:
        console.print(f"  [yellow]skipped[/] {name}: {why}", highlight=False)
    if len(summary.failed) > 10:
        console.print(f"  ... and {len(summary.failed) - 10} more", highlight=False)
    console.print(f"crops in {summary.out_dir}; settings and per-clip counts in {summary.manifest}", highlight=False)
    if not summary.ok:
        err_console.print("[bold red]error:[/] no clip could be cropped", highlight=False)


def evaluation(result: dict[str, Any], results_dir: str, as_json: bool = False) -> None:
    """``eval``: UAR / WAR of the split, per-class recall, and where the files and the row went."""
    row = result["row"]
    probes = result.get("probes")
    if as_json:
        return print_json(row if probes is None else {**row, "probes": probes})
    console.print(f"[bold]{row['run_id']}[/] on {row['dataset']} fold {row['fold']} {row['split']} "
                  f"({row['clips']} clips, {row['views']} view(s)): UAR {100 * row['uar']:.2f}  "
                  f"WAR {100 * row['war']:.2f}", highlight=False)
    console.print(recall_table(result["per_class"], "per-class recall"))
    if probes:
        console.print(perturbation_table(probes))
    console.print(f"predictions and metrics: {result['out_dir']}; row appended to "
                  f"{Path(results_dir) / EVALS_CSV}"
                  + (f", probe rows to {Path(results_dir) / PROBES_CSV}" if probes else ""), highlight=False)


def _signed_pp(value: Any) -> str:
    return "-" if value is None or value != value else f"{100 * float(value):+.2f}"


def perturbation_table(rows: list[dict]) -> Table:
    """``eval --perturb``: UAR / WAR under each perturbation and Δ to the clean clips with the clip interval."""
    level = f"{int(round(100 * float(rows[0]['confidence'])))}%" if rows else "95%"
    table = Table(title=f"temporal-reliance probes (Δ = perturbed − clean, {level} clip bootstrap)", box=None,
                  header_style="bold")
    for col in ("perturbation", "UAR %", "ΔUAR pp", "interval", "WAR %", "ΔWAR pp", "interval"):
        table.add_column(col, justify="left" if col == "perturbation" else "right")
    for r in rows:
        table.add_row(r["perturbation"], _pct(r["uar"]), _signed_pp(r["delta_uar"]),
                      f"[{_signed_pp(r['delta_uar_low'])}, {_signed_pp(r['delta_uar_high'])}]", _pct(r["war"]),
                      _signed_pp(r["delta_war"]),
                      f"[{_signed_pp(r['delta_war_low'])}, {_signed_pp(r['delta_war_high'])}]")
    return table


@contextlib.contextmanager
def exporting() -> Iterator[Callable[[dict], None]]:
    """A spinner naming the export step running (tracing, each format, writing)."""
    with err_console.status("exporting ...") as status:
        yield lambda event: status.update(f"exporting: {event['stage']}")


def exported(result: dict[str, Any], as_json: bool = False) -> None:
    """``export``: per format its file, size and the largest difference from the eager model."""
    if as_json:
        return print_json(result)
    table = Table(title=f"{result['model']}:{result['variant']} epoch {result['epoch']}, input "
                        f"{' x '.join(str(d) for d in result['input_shape'])}", title_justify="left")
    for col, justify in (("format", "left"), ("file", "left"), ("MB", "right"), ("max |diff|", "right"),
                         ("checked with", "left"), ("", "left")):
        table.add_column(col, justify=justify)
    for name, info in result["formats"].items():
        table.add_row(name, info["file"], f"{info['bytes'] / 1e6:.1f}", f"{info['max_abs_diff']:.2e}",
                      info["checked_with"], "[green]ok[/]" if info["ok"] else f"[red]> {result['atol']:g}[/]")
    out = wide_console()  # piped output: keep each format on one line
    out.print(table)
    out.print(f"wrote {result['out_dir']}/ ({', '.join(i['file'] for i in result['formats'].values())}, "
                  f"export.json)", highlight=False)


def recall_table(per_class: list[dict], title: str) -> Table:
    """Per-class recall in % and the class's clips; a class without clips has an undefined recall."""
    table = Table(title=title, box=None, header_style="bold")
    for col in ("class", "recall %", "clips"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for row in per_class:
        recall = row["recall"]
        table.add_row(str(row["class_name"]), "undefined" if recall is None or recall != recall else _pct(recall),
                      str(row["support"]))
    return table


def migration(report: Any, dry_run: bool) -> None:
    """``runs migrate``: each rename, the folders left as they were (why), and the counts."""
    for old, new in report.renamed:
        console.print(f"{'would rename' if dry_run else 'renamed'} {old} -> {new}", highlight=False)
    for name, why in report.left:
        err_console.print(f"[yellow]left[/] {name}: {why}", highlight=False)
    console.print(f"{len(report.renamed)} folder(s), {report.rows} result row(s)"
                  + (" (dry run: nothing written)" if dry_run else ""), highlight=False)


# ============================================================================================
# run ablation


def sweep_status(status: Any, executor: str, *, dry_run: bool = False) -> None:
    """The sweep's grid and protocol, what is finished and what will run (all of it with ``dry_run``),
    and a note on run folders of the older run-id scheme."""
    plan, cells = status.plan, status.cells
    console.print(
        f"sweep [bold]{plan.sweep_id}[/]: {plan.model} variants {','.join(plan.variants)}"
        + (f" + baselines {','.join(m for m, _ in plan.baselines)}" if plan.baselines else "")
        + f" | {plan.dataset} folds {','.join(map(str, plan.folds))} seeds {','.join(map(str, plan.seeds))}"
        + f" | {plan.train.protocol} protocol, {plan.train.epochs} epochs, {plan.data.frames}x{plan.data.size}²"
        + f" | train_hash {status.train_hash} recipe {plan.first.recipe_hash}\n"
        f"{len(cells)} cells: {len(status.finished)} finished, {len(status.todo)} to run ({executor}, jobs={status.jobs})"
        + (f", of them {len(status.to_probe)} finished only to probe" if status.to_probe else "")
        + (f"\nprobes after training: {','.join(plan.probes)} (probes.csv)" if plan.probes else ""),
        highlight=False)
    if status.legacy:
        runs_dir = plan.runs_dir
        err_console.print(f"[yellow]note:[/] {len(status.legacy)} run folder(s) in {runs_dir} use the older run-id "
                          f"scheme (e.g. {status.legacy[0].name}) and are not reused; `ifdd-bench runs migrate "
                          f"--runs-dir {runs_dir}` renames them", highlight=False)
    if dry_run:
        for cell in status.todo:
            console.print(f"  would run {cell.run_id}", highlight=False)


def sweep_progress(progress: Any, total: int) -> Callable[[dict], None]:
    """Turn sweep events (and forwarded engine events) into a rich progress display: one bar for
    the cells, and one line per cell that is training (two at once in a pooled sweep)."""
    cells = progress.add_task("cells", total=total)
    lines: dict[str, Any] = {}  # run_id -> task of a cell that has sent engine events
    finished: set[str] = set()

    def line(run_id: str) -> Any:
        if run_id not in lines:
            lines[run_id] = progress.add_task(run_id, total=None)
        return lines[run_id]

    def on_event(event: dict) -> None:
        kind = event.get("kind")
        if kind in ("cell_done", "cell_failed"):
            run_id = event["run_id"]
            finished.add(run_id)
            if run_id in lines:
                progress.remove_task(lines.pop(run_id))
            progress.advance(cells)
            if kind == "cell_failed":
                err_console.print(f"[red]failed[/] {run_id}: {event['error']}", highlight=False)
            else:
                console.print(f"[green]done[/]   {run_id} ({event['seconds']:.0f} s)", highlight=False)
        elif kind == "run" and isinstance(event.get("data"), dict) and event["run_id"] not in finished:
            data, run_id = event["data"], event["run_id"]
            stage = data.get("kind")
            if stage == "epoch_start":
                progress.update(line(run_id), description=f"{run_id} epoch {data['epoch'] + 1}/{data['epochs']}",
                                completed=0, total=data.get("steps"))
            elif stage == "step":
                progress.update(line(run_id), completed=data["step"] + 1, total=data["steps"],
                                description=f"{run_id} epoch {data['epoch'] + 1} loss {data['loss']:.3f}")
            elif stage == "epoch_end":
                progress.update(line(run_id), description=f"{run_id} epoch {data['epoch'] + 1} "
                                f"val UAR {100 * data.get('val_uar', float('nan')):.1f} "
                                f"test UAR {100 * data.get('test_uar', float('nan')):.1f}")
            elif stage == "warning":
                err_console.print(f"[yellow]warning[/] {run_id}: {data.get('message')}", highlight=False)
            elif stage == "data_progress":
                progress.update(line(run_id), description=f"{run_id} data: {data.get('stage', '')}",
                                completed=data.get("done", 0), total=data.get("total"))
            elif stage == "probe":
                progress.update(line(run_id), description=f"{run_id} probes", completed=data.get("done", 0),
                                total=data.get("total"))

    return on_event


@contextlib.contextmanager
def sweep_bar(total: int) -> Iterator[Callable[[dict], None]]:
    """A transient sweep display (:func:`sweep_progress`) for ``total`` cells; yields its callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        yield sweep_progress(progress, total)


def sweep_summary(rows: list[dict]) -> None:
    table = Table(title="ablation summary (test, mean ± std over folds x seeds)")
    for col in ("model", "variant", "n", "UAR %", "WAR %"):
        table.add_column(col, justify="right" if col in ("n", "UAR %", "WAR %") else "left")
    def pm(mean: float, std: float) -> str:  # a single run has no std to show
        return f"{100 * mean:.2f}" + ("" if std != std else f" ± {100 * std:.2f}")

    for r in rows:
        table.add_row(r["model"], r["variant"], str(r["n"]), pm(r["uar_mean"], r["uar_std"]),
                      pm(r["war_mean"], r["war_std"]))
    console.print(table)


def sweep_report(report: Any) -> None:
    """The end of ``run ablation``: the paper-layout ablation table(s), paired statistics,
    temporal-reliance and controls tables of the rendered report, or the simple summary table when
    there is no report (and why)."""
    if not report.summary:
        return
    result = report.result
    if result is None:
        sweep_summary(report.summary)
        if report.error:
            err_console.print(f"[yellow]report not rendered:[/] {report.error}", highlight=False)
        return
    _ablation_tables(console, result)
    if not result.ablation_keys:
        sweep_summary(report.summary)
    paired_statistics(console, result)
    dynamics_tables(console, result)
    if result.reference_note:
        err_console.print(f"[yellow]note:[/] {result.reference_note}", highlight=False)
    console.print(f"report: {len(result.files)} files in {result.out_dir}/ (tables .tex/.md, plots, report.md)",
                  highlight=False)


def sweep_outcome(outcome: Any) -> None:
    """Cells trained, skipped and failed, the job record, and each failure (with how to retry)."""
    probe_only = set(outcome.probe_only)
    trained = [r for r in outcome.done if r not in probe_only]
    console.print(f"{len(trained)} trained, " + (f"{len(outcome.done) - len(trained)} probed only, " if probe_only else "")
                  + f"{len(outcome.skipped)} skipped, {len(outcome.failed)} failed "
                  f"in {outcome.seconds:.0f} s; job record: {outcome.folder / 'jobs.csv'}", highlight=False)
    if outcome.failed:
        for failure in outcome.failed:
            err_console.print(f"[red]failed[/] {failure.run_id}: {failure.error}", highlight=False)
        err_console.print("re-run the same command to retry only the failed cells")


# ============================================================================================
# profile


@contextlib.contextmanager
def profiling() -> Iterator[Callable[[str], None]]:
    """Progress of ``profile``: a spinner in a terminal, one line per step on stderr when piped."""
    if console.is_terminal:
        with console.status("profiling ...") as status:
            yield lambda message: status.update(f"profiling {message}")
    else:  # piped / logged: one line per step on stderr
        yield lambda message: err_console.print(f"profiling {message}", highlight=False)


def profile_rows(rows: list[dict[str, Any]]) -> None:
    """The profile table, the counters per model, per-module trees and the authors' comparison."""
    devices = sorted({str(r.get("device_name") or r.get("device") or "") for r in rows} - {""})
    table = Table(title="profile: complexity per clip (cpu, fp32, batch 1); timing per row",
                  caption=f"device: {'; '.join(devices)}" if devices else None)
    left = ("model", "measure", "prec", "B,C,T,H,W")
    for col in (*left, "params M", "GMACs fvcore", "GFLOPs torch", "median ms", "p90 ms", "clips/s", "peak MB"):
        table.add_column(col, justify="left" if col in left else "right", overflow="fold")
    for row in rows:
        ok = row.get("status") == "ok"
        table.add_row(f"{row['model']}:{row['variant']}", str(row.get("measure", "")), str(row.get("precision", "")),
                      str(row.get("input_shape", "")).replace("x", ","), fmt(row.get("params_total", 0) / 1e6),
                      fmt(row.get("gmacs_per_clip"), 3), fmt(row.get("gflops_per_clip"), 3),
                      fmt(row.get("latency_median_ms"), 1) if ok else "OOM",
                      fmt(row.get("latency_p90_ms"), 1), fmt(row.get("clips_per_s"), 2),
                      fmt(row.get("peak_mem_mb"), 0))
    wide_console().print(table)
    seen = set()
    for row in rows:
        key = (row["model"], row["variant"])
        if key in seen:
            continue
        seen.add(key)
        wide_console().print(f"[dim]{row['model']}:{row['variant']}: {row.get('mac_counter')} {row.get('mac_counter_version')} "
                             f"(MACs), {row.get('flop_counter')} {row.get('flop_counter_version')} (FLOPs); "
                             f"extra handles: {row.get('extra_mac_handles') or 'none'}; "
                             f"ops counted as 0 MACs: {row.get('unsupported_ops') or 'none'}[/]", highlight=False)
    for row in rows:
        if row.get("_modules"):
            _module_tree(row["model"], row["variant"], row["_modules"])
        comparison = row.get("_authors")
        if comparison:
            console.print(
                f"IFDD train step vs the authors' code (batch 2, 16x224x224, CPU): ours "
                f"{comparison['ours_seconds']:.2f} s / {comparison['ours_peak_rss_gb']:.2f} GB peak RSS, authors "
                f"{comparison['authors_seconds']} s / {comparison['authors_peak_rss_gb']} GB -> "
                f"speed-up {comparison['speedup']:.2f}x, {comparison['memory_fraction']:.0%} of the memory "
                f"(the authors' figures are from an idle machine, so compare on one too)", highlight=False)


def _module_tree(model: str, variant: str, modules: list[dict[str, Any]]) -> None:
    from rich.tree import Tree

    root = modules[0]
    tree = Tree(f"{model}:{variant}  {root['params'] / 1e6:.2f} M params, {root['macs'] / 1e9:.3f} GMACs")
    nodes = {"": tree}
    for item in modules[1:]:
        parent = item["module"].rpartition(".")[0]
        label = (f"{item['module'].rpartition('.')[2]} [dim]({item['type']})[/] {item['params'] / 1e6:.3f} M, "
                 f"{item['macs'] / 1e9:.3f} GMACs ({item['share']:.1%})")
        nodes[item["module"]] = nodes.get(parent, tree).add(label)
    console.print(tree)


def appended(written: int, out: str) -> None:
    console.print(f"appended {written} row(s) to {out}")


@contextlib.contextmanager
def counting() -> Iterator[Callable[[str], None]]:
    """A spinner while the models missing from the profile rows are counted."""
    with console.status("counting models not yet in the profile rows ...") as status:
        yield lambda model: status.update(f"counting {model}")


def reported(rows: list[dict[str, Any]]) -> None:
    """Reported-vs-measured table (rows of :func:`ifdd_bench.engine.profile.reported_vs_measured`)."""
    table = Table(title="reported vs measured (per clip; ours: fvcore GMACs and torch GFLOPs)")
    for col in ("method", "reported params M", "reported GFLOPs", "reported input", "our params M",
                "our GMACs", "our GFLOPs", "our input", "GMACs / reported", "source"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["method"], fmt(row["reported_params_m"]), fmt(row["reported_gflops"]),
                      row["reported_input"], fmt(row["measured_params_m"]), fmt(row["measured_gmacs_fvcore"], 3),
                      fmt(row["measured_gflops_torch"], 3), row["measured_input"] or "not measured",
                      fmt(row["gmacs_over_reported"]), row["source"])
    wide_console().print(table)


# ============================================================================================
# config show


def spec_yaml(text: str) -> None:
    """``config show``: the resolved spec's YAML as is (no rich markup), so it can be redirected to a file."""
    sys.stdout.write(text)
    sys.stdout.flush()


# ============================================================================================
# report


def rich_table(table: Any, skip: tuple[str, ...] = ()) -> Table:
    """A rich Table of an ``ifdd_bench.reports.markup.ReportTable`` (bold best, block titles)."""
    keep = [i for i, name in enumerate(table.columns) if name not in skip]
    out = Table(title=escape(table.caption), header_style="bold")
    header, justify = table.plain_header(), table.justify()
    label_width = min(26, max([len(row[0].text) for block in table.blocks for row in block.rows] or [8]))
    for i in keep:
        out.add_column(escape(header[i]), justify=justify[i], no_wrap=i > 0, min_width=label_width if i == 0 else None)
    for b, block in enumerate(table.blocks):
        if b > 0:
            out.add_section()
            if block.title:
                out.add_row(f"[italic]{escape(block.title)}[/]", *[""] * (len(keep) - 1))
        for row in block.rows:  # labels such as "GAP head [ifdd_tiny]" are text, not rich markup
            out.add_row(*[f"[bold]{escape(row[i].text)}[/]" if row[i].bold and row[i].text else escape(row[i].text)
                          for i in keep])
    return out


def _ablation_tables(out: Console, result: Any) -> None:
    """The ablation table(s) of a rendered report, each followed by its notes."""
    for key in result.ablation_keys:
        out.print(rich_table(result.tables[key]))
        for note in result.tables[key].notes:
            out.print(f"  [dim]{escape(note)}[/]", highlight=False)


def paired_statistics(out: Console, result: Any) -> None:
    """The paired-difference tables of a rendered report: over runs, then over test clips (with its caveat)."""
    for key in ("stats", "stats_clips"):
        if key in result.tables:
            table = result.tables[key]
            out.print(rich_table(table))
            for note in table.notes:
                out.print(f"  [dim]{escape(note)}[/]", highlight=False)


def dynamics_tables(out: Console, result: Any) -> None:
    """The temporal-reliance table (probes.csv) and the controls table of a rendered report, each with
    its notes, where the report has them."""
    for key in ("temporal_reliance", "controls"):
        table = result.tables.get(key)
        if table is not None:
            out.print(rich_table(table))
            for note in table.notes:
                out.print(f"  [dim]{escape(note)}[/]", highlight=False)


@contextlib.contextmanager
def rendering() -> Iterator[Callable[[dict], None]]:
    """Progress of ``report`` on stderr, fed by ``render_report``'s events: in a terminal a live line
    with the step (and panel k/n of a figure), what is written so far and the elapsed time; when
    piped, one line per step."""
    written = {"table": 0, "plot": 0}
    if not err_console.is_terminal:
        def line(event: dict) -> None:
            if event.get("kind") == "stage":
                err_console.print(f"report: {event['name']}", highlight=False)
        yield line
        return
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                   transient=True)
    with bar:
        task = bar.add_task("report: starting", total=None)
        step = ["starting"]

        def on_event(event: dict) -> None:
            kind = event.get("kind")
            if kind in written:
                written[kind] += 1
            elif kind == "stage":
                step[0] = str(event["name"])
            elif kind == "panel":
                step[0] = f"{event['name']}: panel {event['done']}/{event['total']}"
            bar.update(task, description=f"report: {escape(step[0])}  [dim]({written['table']} tables, "
                                         f"{written['plot']} figures written)[/]")

        yield on_event


def report(result: Any) -> None:
    """``report``: the ablation, paired-statistics, temporal-reliance and controls tables, what was not
    rendered, the files."""
    out = wide_console()  # piped output: keep table rows on one line
    _ablation_tables(out, result)
    paired_statistics(out, result)
    dynamics_tables(out, result)
    for item in result.skipped:
        out.print(f"[yellow]not rendered:[/] {item}", highlight=False)
    out.print(f"wrote {len(result.files)} files to {result.out_dir} in {result.seconds:.2f} s", highlight=False)


def readme_updated(path: str, changed: list[str]) -> None:
    wide_console().print(f"{path}: {'updated ' + ', '.join(changed) if changed else 'generated blocks up to date'}",
                         highlight=False)


# ============================================================================================
# viz splits


@contextlib.contextmanager
def capture_bar() -> Iterator[Callable[[dict], None]]:
    """A transient bar over the clips a capture runs through; yields its progress callback."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("capturing splits", total=None)

        def on_event(event: dict) -> None:
            if event.get("kind") == "capture":
                progress.update(task, completed=event["done"], total=event["total"])

        yield on_event


def split_figures(figures: dict[str, Any]) -> None:
    """``viz splits``: the slot statistics (SynthDFER) and the files written."""
    if figures["markdown"] is not None:
        console.print(figures["markdown"], highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("no ground truth in this capture (real clips): figures only, no split statistics")
    console.print(f"wrote {len(figures['files'])} files to {figures['out']}/ (capture: {figures['capture']})",
                  highlight=False)
