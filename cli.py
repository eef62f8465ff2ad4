"""``ifdd-bench``: the command-line interface (click + rich live here and nowhere else).

Commands parse options, call library functions of ``ifdd_bench`` and print. User mistakes arrive
as :class:`ifdd_bench.errors.BenchError` and are printed as one clear message with a non-zero
exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ifdd_bench.errors import BenchError

console = Console()
err_console = Console(stderr=True)


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BenchError (and Ctrl-C) into a clean message + exit code unless --debug is on."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except BenchError as err:
            if debug:
                raise
            err_console.print(f"[bold red]error:[/] {err}", highlight=False)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; finished work is kept, re-run the same command to resume")
            sys.exit(130)

    return wrapper


def command(group: click.Group, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``group.command`` with the BenchError handler applied."""

    def deco(fn: Callable[..., Any]) -> click.Command:
        return group.command(*args, **kwargs)(_handle_errors(fn))

    return deco


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.version_option(package_name="ifdd-bench")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Benchmark and ablation toolkit for dynamic facial expression recognition (IFDD)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.group()
def run() -> None:
    """Train models and run ablation sweeps."""


@main.group()
def data() -> None:
    """Generate SynthDFER, validate real datasets, benchmark loading."""


@main.group()
def viz() -> None:
    """Figures from trained checkpoints."""


# ============================================================================================
# models


@command(main, "models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List registered models and their ablation variants."""
    from ifdd_bench import registry

    rows = []
    for name in registry.list_models():
        entry = registry.get_entry(name)
        rows.append({"model": name, "family": entry.family, "variants": list(entry.ablations),
                     "description": entry.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="registered models")
    for col in ("model", "family", "variants", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["model"], row["family"], ", ".join(row["variants"]), row["description"])
    console.print(table)


# ============================================================================================
# data (issue 3 readers/check/bench, issue 4 synth/preview)

# --- issue 3: real datasets (data check, data bench, data import) ---


class _DataBar:
    """Rich progress bar fed by ``{"kind": "data_progress", "stage", "done", "total"}`` events."""

    def __init__(self, out: Console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=out, transient=True)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_DataBar":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

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


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


def _issues_table(title: str, issues: dict, style: str) -> Table:
    table = Table(title=title, title_justify="left", title_style=style)
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("first items", overflow="fold")
    for kind, items in sorted(issues.items()):
        shown = "\n".join(items[:3]) + (f"\n... and {len(items) - 3} more" if len(items) > 3 else "")
        table.add_row(kind, str(len(items)), shown)
    return table


@command(data, "check")
@click.option("--dataset", type=click.Choice(["dfew", "ferv39k", "mafw", "synth"]), required=True)
@click.option("--data-root", type=click.Path(path_type=Path), required=True, help="Dataset folder as shipped.")
@click.option("--fold", "folds", type=int, multiple=True, help="Fold(s) to check (default: all).")
@click.option("--frame-source", default="default", show_default=True,
              help="dfew: 16f|raw|video; ferv39k: facecrop|video; mafw: frames|faces|video.")
@click.option("--label-order", default="official", show_default=True, help="mafw: official|dferclip; ferv39k: official|dfew.")
@click.option("--clip-len", default=16, show_default=True, type=int, help="Frames a clip needs before padding.")
@click.option("--images", type=click.Choice(["header", "decode", "none"]), default="header", show_default=True,
              help="Frame scan: file markers (fast), full decode (slow), or none.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def data_check_cmd(dataset: str, data_root: Path, folds: tuple[int, ...], frame_source: str, label_order: str,
                   clip_len: int, images: str, as_json: bool) -> None:
    """Validate a dataset folder: counts vs the official numbers, missing/short/unreadable clips.

    Exits 1 when something would break training (missing files or folders, malformed lines, unknown
    labels, zero-frame or unreadable clips); warnings (short clips, a few bad frames, counts that
    differ from the official ones) are handled by documented rules and do not fail the check.
    """
    from ifdd_bench.data.check import check_dataset

    with _DataBar(err_console) as bar:
        report = check_dataset(dataset, data_root, folds=list(folds) or None, frame_source=frame_source,
                               label_order=label_order, clip_len=clip_len, images=images, progress=bar)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
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
    if not report.ok:
        sys.exit(1)


@command(data, "bench")
@click.option("--clips", default=42, show_default=True, type=int, help="Clips per generated dataset.")
@click.option("--workers", "workers_csv", default="0,1,2", show_default=True, help="DataLoader worker counts.")
@click.option("--decoders", default="pil,torchvision,auto", show_default=True, help="Decoders to compare.")
@click.option("--repeats", default=1, show_default=True, type=int, help="Passes per cell (median reported).")
@click.option("--model", default="ifdd_tiny", show_default=True,
              help="Also time this model's training step on CPU ('none' to skip).")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
def data_bench_cmd(clips: int, workers_csv: str, decoders: str, repeats: int, model: str, as_json: bool) -> None:
    """Loader throughput (clips/s) for 16x112x112 and 16x224x224 clips on generated JPEG folders."""
    from ifdd_bench.errors import ConfigError

    try:
        workers = tuple(int(w) for w in workers_csv.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--workers expects comma-separated integers, got {workers_csv!r}") from None
    names = tuple(d.strip() for d in decoders.split(",") if d.strip())
    bad = [d for d in names if d not in ("pil", "torchvision", "auto")]
    if bad or "pil" not in names or 0 not in workers:
        raise ConfigError("--decoders must name pil (the baseline) and only pil|torchvision|auto; "
                          "--workers must include 0")
    from ifdd_bench.data.loader_bench import decode_microbench, run_loader_bench
    from ifdd_bench.engine.overhead import model_consumption

    with _DataBar(err_console) as bar:
        rows = run_loader_bench(clips=clips, workers=workers, decoders=names, repeats=repeats, progress=bar)
    decode_rows = decode_microbench()
    consumption = None
    if model != "none":
        try:
            consumption = [model_consumption(model)]  # at the model's own geometry
        except BenchError as err:
            err_console.print(f"[yellow]model consumption skipped:[/] {err.message}")
    if as_json:
        click.echo(json.dumps({"loader": rows, "decode": decode_rows, "model": consumption}, indent=2))
        return
    table = Table(title=f"loader throughput, {rows[0]['clips']} clips, batch {rows[0]['batch']}, segment sampling + "
                        "unified augmentation (ratio vs Pillow / 0 workers, same run)", title_justify="left")
    for col in ("clip", "frames on disk", "decoder", "workers", "clips/s", "ratio"):
        table.add_column(col, justify="right" if col in ("workers", "clips/s", "ratio") else "left")
    for row in rows:
        decoder = row["decoder"] if not row["cached"] else (
            f"in-memory cache (build {row['cache_build_clips_per_s']:.0f} clips/s)")
        table.add_row(row["geometry"], f"{row['stored']}px JPEG", decoder, str(row["workers"]),
                      f"{row['clips_per_s']:.1f}", f"{row['ratio']:.2f}x")
    console.print(table)
    decode = Table(title="decode + resize, one thread, best of 15 (ms per frame; speed-up vs Pillow)",
                   title_justify="left")
    for col in ("frame", "from", "pil", "torchvision", "auto"):
        decode.add_column(col, justify="left" if col in ("frame", "from") else "right")
    for geometry, stored in dict.fromkeys((r["geometry"], r["stored"]) for r in decode_rows):
        cells = {r["decoder"]: r for r in decode_rows if (r["geometry"], r["stored"]) == (geometry, stored)}
        decode.add_row(geometry, f"{stored}px JPEG", *[f"{cells[d]['ms_per_frame']:.2f} ({cells[d]['speedup_vs_pil']:.2f}x)"
                                                       for d in ("pil", "torchvision", "auto")])
    console.print(decode)
    for item in consumption or []:
        console.print(f"{item['model']} training step ({item['geometry']}, batch {item['batch']}, CPU, "
                      f"{item['torch_threads']} threads, OMP_WAIT_POLICY {item['omp_wait_policy']}): "
                      f"[bold]{item['train_clips_per_s']:.1f} clips/s[/]")


@command(data, "import")
@click.option("--dataset", type=click.Choice(["dfew", "ferv39k", "mafw"]), required=True)
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="Root to write ifdd_splits/ into (then train with this --data-root).")
@click.option("--fold", default=1, show_default=True, type=int)
@click.option("--train", "train_list", type=click.Path(path_type=Path), required=True, help="Training list file.")
@click.option("--test", "test_list", type=click.Path(path_type=Path), required=True, help="Test list file.")
@click.option("--label-order", default=None, help="Order of integer labels: dfew | official | alphabetical.")
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="Folder relative clip paths start from (default: the list file's folder).")
def data_import_cmd(dataset: str, data_root: Path, fold: int, train_list: Path, test_list: Path,
                    label_order: str | None, base: Path | None) -> None:
    """Import Former-DFER / DFER-CLIP / MAE-DFER style lists ('<dir> [num_frames] <label>')."""
    from ifdd_bench.data.lists import import_lists

    with _DataBar(err_console) as bar:
        summary = import_lists(dataset, data_root, fold, {"train": train_list, "test": test_list},
                               label_order=label_order, base=base, progress=bar)
    for split, item in summary.items():
        extra = ", ".join(f"{k} {v}" for k, v in item["counts"].items())
        console.print(f"{split}: {item['clips']} clips -> {item['file']}" + (f" ({extra})" if extra else ""))
    console.print(f"train with [bold]--dataset {dataset} --data-root {data_root} --fold {fold}[/]")


# --- issue 4: SynthDFER (data synth, data preview); keep at the end of the data section ---


def _synth_config(preset_name: str, sets: tuple[str, ...]) -> Any:
    """SynthConfig of a preset with typed ``knob=value`` overrides (unknown knob -> ConfigError)."""
    from ifdd_bench.config import apply_overrides, parse_overrides
    from ifdd_bench.data.synth import preset
    from ifdd_bench.errors import ConfigError

    if any(key == "preset" for key, _ in parse_overrides(sets)):
        raise ConfigError("--set preset=... is not a knob; choose the preset with --preset")
    return apply_overrides(preset(preset_name), list(sets), what="SynthDFER")


@command(data, "synth")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (DFEW layout). Default: the cache folder that runs use.")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE",
              help="Knob override, repeatable: clips=300, frames=16, size=64, seed=1, context_bias=0.8 ...")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all usable CPUs).")
@click.option("--force", is_flag=True, help="Replace --out if it already exists.")
def data_synth_cmd(preset_name: str, out: Path | None, sets: tuple[str, ...], workers: int | None,
                   force: bool) -> None:
    """Generate the SynthDFER benchmark in the official DFEW layout."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ifdd_bench.data.synth import dataset_name, default_cache_dir, generate, is_complete
    from ifdd_bench.errors import ConfigError

    cfg = _synth_config(preset_name, sets)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    target = out if out is not None else default_cache_dir() / dataset_name(cfg)
    if out is None and is_complete(target, cfg) and not force:
        console.print(f"SynthDFER {cfg.preset} already generated: [bold]{target}[/]")
        return
    start = time.perf_counter()
    with Progress(TextColumn("SynthDFER {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("clips"), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(cfg.preset, total=cfg.clips)
        root = generate(cfg, target, workers=workers, overwrite=force or out is None,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    seconds = time.perf_counter() - start
    meta = json.loads((root / "synth.json").read_text())
    console.print(f"wrote [bold]{root}[/]: {cfg.clips} clips ({meta['num_clip_folders']} folders) x {cfg.frames} "
                  f"frames x {cfg.size}x{cfg.size} in {seconds:.1f} s ({cfg.clips / seconds:.1f} clips/s)")
    console.print("class counts: " + ", ".join(f"{k} {v}" for k, v in meta["class_counts"].items()))
    console.print("folds (train/test): " + ", ".join(f"{k}: {v['train']}/{v['test']}" for k, v in meta["folds"].items()))


@command(data, "preview")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--out", type=click.Path(path_type=Path), default=Path("synth_preview.png"), show_default=True,
              help="PNG file to write.")
@click.option("--per-class", default=2, show_default=True, type=int, help="Clips shown per class (1..20).")
@click.option("--cell", default=None, type=int, help="Displayed frame size in pixels (default: max(size, 64)).")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE", help="Knob override, repeatable.")
def data_preview_cmd(preset_name: str, out: Path, per_class: int, cell: int | None, sets: tuple[str, ...]) -> None:
    """Contact sheet of SynthDFER clips: one clip per row, frames left to right, apex framed in red."""
    from ifdd_bench.data.synth import contact_sheet

    cfg = _synth_config(preset_name, sets)
    path = contact_sheet(cfg, out, per_class=per_class, cell=cell)
    console.print(f"wrote [bold]{path}[/]: {per_class} clips per class of SynthDFER {cfg.preset} "
                  f"({cfg.frames} frames, {cfg.size}x{cfg.size}); red frame = apex, yellow bar = emotion intensity")


@command(data, "probe")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--clips", default=2100, show_default=True, type=int, help="Clips sampled (parameters only, no pixels).")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE", help="Knob override, repeatable.")
def data_probe_cmd(preset_name: str, clips: int, sets: tuple[str, ...]) -> None:
    """Where the label lives: a linear classifier on views of the expression parameters (seconds)."""
    from dataclasses import replace

    from ifdd_bench.data.synth.probe import VIEWS, parameter_probe

    cfg = replace(_synth_config(preset_name, sets), clips=clips)
    result = parameter_probe(cfg)
    table = Table(title=f"SynthDFER {cfg.preset}: linear probe, {cfg.clips} clips",
                  caption="expression parameters, 70 % train / 30 % test; chance 1/7 = 0.143")
    for col in ("view", "WAR", "UAR"):
        table.add_column(col, justify="left" if col == "view" else "right")
    for name in VIEWS:
        table.add_row(name, f"{result[name]['war']:.3f}", f"{result[name]['uar']:.3f}")
    console.print(table)


# ============================================================================================
# run train / predict (issue 5)

class _TrainDisplay:
    """Render engine progress events: a live bar per epoch (loss, lr, clips/s, ETA) and one line
    per finished epoch above it."""

    def __init__(self, progress: Any):
        self.progress = progress
        self.task = progress.add_task("starting", total=None, loss=float("nan"), lr=float("nan"), cps=0.0)
        self.data_task = None
        self.selection = ""

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


def _print_train_summary(row: dict, per_class: list[dict] | None, confusion: list | None,
                         classes: list[str] | None, run_dir: str, cached: bool) -> None:
    """One screen: headline numbers with how they were selected, per-class recall, confusion matrix."""
    from rich.columns import Columns
    from rich.panel import Panel

    pct = lambda v: "-" if v is None or v != v else f"{100 * float(v):.2f}"  # noqa: E731
    sel = row["selection"]
    how = ("selected on validation UAR" if sel == "val_uar"
           else "selected on TEST WAR (reference protocol: model selection on the test fold)")
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("")
    table.add_column("UAR %", justify="right")
    table.add_column("WAR %", justify="right")
    table.add_row(f"[bold]test, epoch {int(row['selected_epoch']) + 1} ({how})[/]", pct(row["uar"]), pct(row["war"]))
    if sel == "val_uar":
        table.add_row("validation, same epoch", pct(row["val_uar"]), pct(row["val_war"]))
    table.add_row(f"test, last epoch ({row['epochs']})", pct(row["last_uar"]), pct(row["last_war"]))
    table.add_row("test, best epoch on test (optimistic, literature-style)", pct(row["best_test_uar"]),
                  pct(row["best_test_war"]))
    facts = (f"{row['model']}:{row['variant']} on {row['dataset']} fold {row['fold']}, seed {row['seed']}, "
             f"protocol {row['protocol']} (train hash {row['train_hash']})\n"
             f"{int(row['params']):,} params, {row['frames']}x{row['size']}², {row['num_classes']} classes, "
             f"clips {row['train_clips']}/{row['val_clips']}/{row['test_clips']}, "
             f"{float(row['train_seconds']):.0f}s on {row['device']}"
             + (f", engine overhead {100 * float(row['overhead_share']):.1f}% of step time"
                if row.get("overhead_share") not in (None, "") else "")
             + f"\nrun folder {run_dir}" + ("  [dim](finished earlier; stored result)[/]" if cached else ""))
    console.print(Panel(table, title="result", expand=False))
    console.print(facts, highlight=False)
    parts = []
    if per_class:
        rec = Table(title="per-class recall (test)", box=None, header_style="bold")
        for col in ("class", "recall %", "clips"):
            rec.add_column(col, justify="right" if col != "class" else "left")
        for r in per_class:
            rec.add_row(str(r["class_name"]), pct(r["recall"]), str(r["support"]))
        parts.append(rec)
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


@command(run, "train")
@click.option("--model", required=True, help="Registered model (see `ifdd-bench models`).")
@click.option("--variant", default=None, help="Ablation variant of the model (default: full).")
@click.option("--dataset", default="synth", show_default=True, help="synth | dfew | ferv39k | mafw")
@click.option("--data-root", default=None, help="Dataset folder as shipped (synth: embedded SynthDFER when absent).")
@click.option("--fold", default=1, show_default=True, type=int, help="Official fold (1..5; FERV39k: 1).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--protocol", default="unified", show_default=True, help="reference | unified")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Config override, repeatable: epochs=3, lr=1e-4, data.size=64, model.drop_path=0.1 ...")
@click.option("--epochs", default=None, type=int, help="Shortcut for --set epochs=N (warm-up clamped to N-1).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's, auto).")
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--results-dir", default="results", show_default=True)
@click.option("--restart", is_flag=True, help="Train from scratch even if the run folder holds a checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON instead of the summary.")
def train_cmd(model, variant, dataset, data_root, fold, seed, protocol, sets, epochs, device, runs_dir, results_dir,
              restart, as_json):
    """Train one model on one dataset fold under the shared protocol (resumes when re-run).

    Runs alone or under `torchrun --nproc_per_node N` (DistributedDataParallel; only rank 0
    writes). Writes runs/<run_id>/ and appends a row to results/runs.csv.
    """
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ifdd_bench.engine.run import train_run

    from ifdd_bench.spec import build_run_spec

    spec = build_run_spec(model, variant, dataset=dataset, data_root=data_root, fold=fold, seed=seed,
                          protocol=protocol, epochs=epochs, overrides=sets, device=device, runs_dir=runs_dir,
                          results_dir=results_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    done: dict = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"),
               TextColumn("{task.fields[cps]:.1f} clips/s"), TimeRemainingColumn())
    with Progress(*columns, console=err_console if as_json else console, transient=True,
                  disable=not main_rank) as progress:
        display = _TrainDisplay(progress)

        def on_event(event: dict) -> None:
            if event.get("kind") == "done":
                done.update(event)
            display(event)

        row = train_run(spec, progress=on_event, resume=not restart)
    if not main_rank:
        return
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    run_dir = str(Path(spec.runs_dir) / spec.run_id)
    per_class, confusion, classes = done.get("per_class"), done.get("confusion"), done.get("classes")
    if done.get("cached"):
        try:
            stored = json.loads((Path(run_dir) / "result.json").read_text())
            per_class, confusion, classes = stored.get("per_class"), stored.get("confusion"), stored.get("classes")
        except (OSError, ValueError):
            pass
    _print_train_summary(row, per_class, confusion, classes, run_dir, bool(done.get("cached")))


@command(run, "pretrain")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weight file to write (refused if it exists); a resumable <out>.state.pt sits next to it meanwhile.")
@click.option("--model", default="ifdd_tiny", show_default=True, help="IFDD model whose backbone is pre-trained.")
@click.option("--clips", default=3000, show_default=True, type=int, help="Pretext training clips.")
@click.option("--val-clips", default=200, show_default=True, type=int, help="Held-out pretext clips (R^2 per epoch).")
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak AdamW learning rate (one-cycle).")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation and shuffling seed.")
@click.option("--threads", default=None, type=int, help="Torch threads (default: torch's).")
def pretrain_cmd(out: Path, model: str, clips: int, val_clips: int, epochs: int, lr: float, seed: int,
                 threads: int | None) -> None:
    """Pre-train an IFDD embedding + backbone on the emotion-free facial-motion pretext.

    The stand-in for the paper's Kinetics-400 initialisation on a CPU: SynthDFER clips of a disjoint
    seed with no emotion at all, whose faces move anyway; the backbone regresses which face part
    moved when. Load the result with `--set model.pretrained=PATH`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ifdd_bench.errors import ConfigError
    from ifdd_bench.pretext.train import PretextConfig, pretrain

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    cfg = PretextConfig(model=model, clips=clips, val_clips=val_clips, epochs=epochs, lr=lr, seed=seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console) as bar:
        tasks: dict[str, Any] = {}

        def on_event(event: dict) -> None:
            kind = event["kind"]
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
                bar.console.print(f"resuming after epoch {event['epoch']} from {out}.state.pt")

        meta = pretrain(cfg, out, progress=on_event, threads=threads)
    from ifdd_bench.hashing import sha256_file

    r2 = meta["history"][-1]["val_r2"]
    console.print(f"wrote [bold]{out}[/] (sha256 {sha256_file(out)[:12]}); held-out R² per target: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r2.items()))
    console.print(f"use it with: ifdd-bench run ablation --set model.pretrained={out}")


@command(main, "predict")
@click.option("--checkpoint", required=True, metavar="RUN_DIR_OR_FILE",
              help="A run folder (uses best.pt) or a checkpoint file.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--top", default=3, show_default=True, type=int, help="Classes listed per clip in the table.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print all class probabilities as JSON.")
def predict_cmd(checkpoint, paths, top, device, as_json):
    """Classify frame folders or video files with a trained checkpoint."""
    from ifdd_bench.engine.predict import predict

    result = predict(paths, checkpoint=checkpoint, device=device)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['model']}:{result['variant']} epoch {int(result['epoch']) + 1} "
                        f"({result['checkpoint']})")
    table.add_column("clip")
    table.add_column("prediction")
    table.add_column("p", justify="right")
    table.add_column(f"top {top}")
    for pred in result["predictions"]:
        table.add_row(pred["path"], pred["label"], f"{pred['prob']:.3f}",
                      ", ".join(f"{name} {p:.3f}" for name, p in pred["top"][:top]))
    console.print(table)


@command(main, "eval")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--dataset", default=None, help="synth | dfew | ferv39k | mafw [default: the run's own].")
@click.option("--data-root", default=None, help="Dataset folder as shipped [default: the run's own].")
@click.option("--fold", default=None, type=int, help="Fold to evaluate [default: the run's own].")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="val: the unified protocol's hold-out of the train fold, drawn as in training.")
@click.option("--views", default=None, type=int, help="Temporal views averaged per clip [default: the run's].")
@click.option("-s", "--set", "sets", multiple=True, metavar="data.KEY=VALUE",
              help="Data config override, repeatable (data.eval_sampling=center, data.frames=16 ...).")
@click.option("--device", default="auto", show_default=True)
@click.option("--results-dir", default="results", show_default=True, help="Folder whose evals.csv gets the row.")
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON.")
def eval_cmd(source, dataset, data_root, fold, split, views, sets, device, results_dir, as_json):
    """Evaluate a trained run (or checkpoint) on a dataset split.

    Writes predictions.csv and metrics.json to <run>/evals/<eval_id>/ and one row (kind=eval) to
    <results-dir>/evals.csv. Examples:

    \b
      ifdd-bench eval runs/ifdd-full-dfew-f1-s0-reference-1a2b3c4d --fold 2
      ifdd-bench eval runs/<run_id> --views 2 --split test
    """
    from ifdd_bench.engine.evaluate import evaluate_run

    result = evaluate_run(source, dataset=dataset, data_root=data_root, fold=fold, split=split, views=views,
                          overrides=sets, device=device, results_dir=results_dir)
    row = result["row"]
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    console.print(f"[bold]{row['run_id']}[/] on {row['dataset']} fold {row['fold']} {row['split']} "
                  f"({row['clips']} clips, {row['views']} view(s)): UAR {100 * row['uar']:.2f}  "
                  f"WAR {100 * row['war']:.2f}", highlight=False)
    _print_class_recalls(result["per_class"])
    console.print(f"predictions and metrics: {result['out_dir']}; row appended to "
                  f"{Path(results_dir) / 'evals.csv'}", highlight=False)


def _print_class_recalls(per_class: list[dict]) -> None:
    table = Table(title="per-class recall")
    table.add_column("class")
    table.add_column("recall", justify="right")
    table.add_column("clips", justify="right")
    for row in per_class:
        recall = row["recall"]
        table.add_row(row["class_name"], "undefined" if recall != recall else f"{100 * recall:.1f}",
                      str(row["support"]))
    console.print(table)


@main.group()
def runs() -> None:
    """Maintain run folders."""


@command(runs, "migrate")
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--results-dir", default="results", show_default=True)
@click.option("--dry-run", is_flag=True, help="List the renames without writing.")
def runs_migrate_cmd(runs_dir, results_dir, dry_run):
    """Rename run folders of the older identity scheme (no recipe hash) and their result rows.

    \b
      ifdd-bench runs migrate --dry-run
      ifdd-bench runs migrate --runs-dir runs --results-dir results
    """
    from ifdd_bench.engine.migrate import migrate_runs

    report = migrate_runs(runs_dir, results_dir, dry_run=dry_run)
    for old, new in report.renamed:
        console.print(f"{'would rename' if dry_run else 'renamed'} {old} -> {new}", highlight=False)
    for name, why in report.left:
        err_console.print(f"[yellow]left[/] {name}: {why}", highlight=False)
    console.print(f"{len(report.renamed)} folder(s), {report.rows} result row(s)"
                  + (" (dry run: nothing written)" if dry_run else ""), highlight=False)


# ============================================================================================
# run ablation (issue 8)


def _sweep_progress(progress: Any, total: int) -> Callable[[dict], None]:
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
            elif data.get("kind") == "data_progress":
                progress.update(line(run_id), description=f"{run_id} data: {data.get('stage', '')}",
                                completed=data.get("done", 0), total=data.get("total"))

    return on_event


def _print_sweep_summary(rows: list[dict]) -> None:
    table = Table(title="ablation summary (test, mean ± std over folds x seeds)")
    for col in ("model", "variant", "n", "UAR %", "WAR %"):
        table.add_column(col, justify="right" if col in ("n", "UAR %", "WAR %") else "left")
    def pm(mean: float, std: float) -> str:  # a single run has no std to show
        return f"{100 * mean:.2f}" + ("" if std != std else f" ± {100 * std:.2f}")

    for r in rows:
        table.add_row(r["model"], r["variant"], str(r["n"]), pm(r["uar_mean"], r["uar_std"]),
                      pm(r["war_mean"], r["war_std"]))
    console.print(table)


@command(run, "ablation")
@click.option("--model", default=None, help="Model to ablate [default: ifdd_tiny; ifdd with --data-root].")
@click.option("--variants", default=None,
              help="Comma list of variants or 'all' [default: baseline,no_ladm,no_issm_no_lift,no_issm,no_lift,full,gap].")
@click.option("--baselines", default=None, help="Comma list of baseline models (name or name:variant) under the same protocol.")
@click.option("--dataset", default="synth", show_default=True, help="synth | dfew | ferv39k | mafw.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder as shipped (default: the embedded SynthDFER benchmark).")
@click.option("--folds", default=None, help="Folds, e.g. 1-5 or 1,3 [default: 1 on SynthDFER, all official folds otherwise].")
@click.option("--seeds", default=None, help="Seeds, e.g. 0,1,2 or 0-2 [default: 0].")
@click.option("--epochs", type=int, default=None, help="Epochs per run (overrides the protocol's).")
@click.option("--protocol", default="unified", show_default=True, help="unified | reference.")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Config override for every cell: lr=1e-3, data.size=224, model.drop_path=0.1 (repeatable).")
@click.option("--executor", type=click.Choice(["local", "submitit"]), default="local", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Cells run at once (local processes or submitit jobs) [default: 2 for the embedded "
                   "SynthDFER sweep on a machine with 2+ cores, else 1].")
@click.option("--cluster", default=None, help="submitit cluster: slurm | local | debug [default: auto-detect].")
@click.option("--partition", default=None, help="Slurm partition (submitit).")
@click.option("--gpus-per-job", type=int, default=None, help="GPUs per submitit job.")
@click.option("--timeout-min", type=int, default=None, help="Time limit per submitit job in minutes [default: 1440].")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--restart", is_flag=True, help="Train unfinished cells from scratch instead of resuming their last.pt.")
@click.option("--dry-run", is_flag=True, help="Print the grid and which cells would run, then stop.")
@click.option("--no-report", is_flag=True, help="Do not render tables and plots into the results folder at the end.")
def ablation_cmd(model, variants, baselines, dataset, data_root, folds, seeds, epochs, protocol, overrides,
                 executor, jobs, cluster, partition, gpus_per_job, timeout_min, runs_dir, results_dir, restart,
                 dry_run, no_report) -> None:
    """Run an ablation grid (variants x folds x seeds), skipping cells already in runs.csv.

    With no arguments: IFDD-tiny's ablation on the embedded SynthDFER benchmark on the CPU,
    ending with the summary table and the rendered report in the results folder.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ifdd_bench import sweep
    from ifdd_bench.config import train_hash

    plan = sweep.plan_sweep(model, variants, baselines=baselines, dataset=dataset, data_root=data_root,
                            folds=folds, seeds=seeds, epochs=epochs, protocol=protocol, overrides=overrides,
                            runs_dir=runs_dir, results_dir=results_dir)
    if jobs is None:
        jobs = sweep.default_jobs(plan, executor)
    cells = plan.cells()
    todo, finished = sweep.partition_finished(cells, plan.results_dir)
    console.print(
        f"sweep [bold]{plan.sweep_id}[/]: {plan.model} variants {','.join(plan.variants)}"
        + (f" + baselines {','.join(m for m, _ in plan.baselines)}" if plan.baselines else "")
        + f" | {plan.dataset} folds {','.join(map(str, plan.folds))} seeds {','.join(map(str, plan.seeds))}"
        + f" | {plan.train.protocol} protocol, {plan.train.epochs} epochs, {plan.data.frames}x{plan.data.size}²"
        + f" | train_hash {train_hash(plan.train)} recipe {plan.first.recipe_hash}\n"
        f"{len(cells)} cells: {len(finished)} finished, {len(todo)} to run ({executor}, jobs={jobs})",
        highlight=False)
    _legacy_hint(plan.runs_dir)
    if dry_run:
        for cell in todo:
            console.print(f"  would run {cell.run_id}", highlight=False)
        return
    options = {k: v for k, v in (("cluster", cluster), ("slurm_partition", partition),
                                 ("gpus_per_node", gpus_per_job), ("timeout_min", timeout_min)) if v is not None}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        outcome = sweep.run_sweep(plan, executor=executor, jobs=jobs, submitit_options=options, resume=not restart,
                                  progress=_sweep_progress(progress, len(todo)))
    summary = sweep.summarize(plan)
    if summary and no_report:
        _print_sweep_summary(summary)
    elif summary:
        _render_sweep_report(plan, summary)
    console.print(f"{len(outcome.done)} trained, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed "
                  f"in {outcome.seconds:.0f} s; job record: {outcome.folder / 'jobs.csv'}", highlight=False)
    if outcome.failed:
        for failure in outcome.failed:
            err_console.print(f"[red]failed[/] {failure.run_id}: {failure.error}", highlight=False)
        err_console.print("re-run the same command to retry only the failed cells")
        sys.exit(3)


def _legacy_hint(runs_dir: str) -> None:
    """Point at ``runs migrate`` when the runs folder holds folders of the older identity scheme."""
    from ifdd_bench.engine.migrate import legacy_folders

    old = legacy_folders(runs_dir)
    if old:
        err_console.print(f"[yellow]note:[/] {len(old)} run folder(s) in {runs_dir} use the older run-id scheme "
                          f"(e.g. {old[0].name}) and are not reused; `ifdd-bench runs migrate --runs-dir {runs_dir}` "
                          "renames them", highlight=False)


def _print_paired_statistics(console: Console, result: Any) -> None:
    """The paired-difference tables of a rendered report: over runs, then over test clips (with its caveat)."""
    for key in ("stats", "stats_clips"):
        if key in result.tables:
            table = result.tables[key]
            console.print(_rich_table(table))
            for note in table.notes:
                console.print(f"  [dim]{escape(note)}[/]", highlight=False)


def _render_sweep_report(plan: Any, summary: list[dict]) -> None:
    """Print the paper-layout ablation table and write the full report for the sweep's protocol.

    Renders ``<results_dir>/report`` with the reports package, restricted to this sweep's
    train_hash so older rows of other protocols in the same runs.csv do not block it; when the
    report cannot be rendered the simple summary table is printed instead.
    """
    from ifdd_bench.config import train_hash

    try:
        from ifdd_bench.reports.render import render_report
    except ImportError:  # pragma: no cover - reports package absent
        _print_sweep_summary(summary)
        return
    folder = Path(plan.results_dir) / "report"
    command_line = "ifdd-bench " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "ifdd-bench run ablation"
    try:
        result = render_report(plan.results_dir, plan.runs_dir, folder,
                               filters=[f"train_hash={train_hash(plan.train)}"], command=command_line)
    except BenchError as err:
        _print_sweep_summary(summary)
        err_console.print(f"[yellow]report not rendered:[/] {err}", highlight=False)
        return
    shown = False
    for key in result.ablation_keys:
        console.print(_rich_table(result.tables[key]))
        for note in result.tables[key].notes:
            console.print(f"  [dim]{escape(note)}[/]", highlight=False)
        shown = True
    if not shown:
        _print_sweep_summary(summary)
    _print_paired_statistics(console, result)
    if result.reference_note:
        err_console.print(f"[yellow]note:[/] {result.reference_note}", highlight=False)
    console.print(f"report: {len(result.files)} files in {folder}/ (tables .tex/.md, plots, report.md)",
                  highlight=False)


# ============================================================================================
# profile (issue 7)


def _csv_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter(f"{option} needs at least one value")
    return items


def _wide_console() -> Console:
    """The shared console in a terminal; a 160-column one when output is piped (tables stay readable)."""
    return console if console.is_terminal else Console(width=160)


def _fmt(value: Any, digits: int = 2) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else "-"
    return "-" if number != number else f"{number:,.{digits}f}"


@command(main, "profile")
@click.argument("models", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Profile every registered model (variant full).")
@click.option("--frames", type=int, default=None, help="Frames T (default: each model's native T).")
@click.option("--size", type=int, default=None, help="Frame size H=W (default: each model's native size).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch of the latency / train-step rows.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (cuda:N).")
@click.option("--precision", default="fp32", show_default=True, help="Comma list of fp32, bf16, fp16 (autocast).")
@click.option("--mode", default="infer", show_default=True, help="Comma list of infer (eval forward), train (fwd+bwd+AdamW).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model before warm-up.")
@click.option("--by-module", is_flag=True, help="Print params and fvcore MACs per module.")
@click.option("--depth", type=int, default=2, show_default=True, help="Module depth of --by-module.")
@click.option("--throughput/--no-throughput", default=None,
              help="Sweep batch sizes until out of memory (default: on for cuda, off for cpu).")
@click.option("--max-batch", type=int, default=None, help="Cap of the throughput sweep (default 8 on cpu, 4096 on cuda).")
@click.option("--iters", type=int, default=None, help="Timed repetitions (default 20 cpu / 100 cuda).")
@click.option("--warmup", type=int, default=None, help="Untimed warm-up repetitions (default 3 cpu / 10 cuda).")
@click.option("--max-seconds", type=float, default=None, help="Stop timing a row after this long (>= 5 repetitions).")
@click.option("--threads", type=int, default=None, help="torch.set_num_threads for the timed rows.")
@click.option("--cudnn-benchmark", is_flag=True, help="Set torch.backends.cudnn.benchmark while timing.")
@click.option("--complexity-only", is_flag=True, help="Only params / MACs / FLOPs (no timing).")
@click.option("--in-process", is_flag=True,
              help="Time in this process (cpu peak RSS then includes earlier work; default: a fresh process per row).")
@click.option("--reported", is_flag=True, help="Show our params/MACs beside the literature's reported numbers.")
@click.option("--out", type=click.Path(dir_okay=False), default="results/profile.csv", show_default=True,
              help="CSV the rows are appended to.")
@click.option("--no-write", is_flag=True, help="Print only; append nothing to --out.")
def profile_cmd(models: tuple[str, ...], all_models: bool, frames: int | None, size: int | None, batch: int,
                device: str, precision: str, mode: str, compile_: bool, by_module: bool, depth: int,
                throughput: bool | None, max_batch: int | None, iters: int | None, warmup: int | None,
                max_seconds: float | None, threads: int | None, cudnn_benchmark: bool, complexity_only: bool,
                in_process: bool, reported: bool, out: str, no_write: bool) -> None:
    """Parameters, MACs, FLOPs, latency, throughput, train-step time and peak memory.

    MODEL[:VARIANT]... are registry names (see `ifdd-bench models`). Every row states its input
    shape, counters (name, version, unit), device, versions and precision, and is appended to --out.

    \b
    ifdd-bench profile ifdd --mode train --batch 2     # train step vs the authors' 10.3 s / 4.5 GB
    ifdd-bench profile --all --complexity-only --reported
    ifdd-bench profile ifdd_tiny former_dfer --device cuda --precision fp32,bf16
    """
    from ifdd_bench.engine import profile as prof

    if reported and not models and not all_models:
        _print_reported(prof, out)
        return
    request = prof.ProfileRequest(
        models=models, all_models=all_models, frames=frames, size=size, batch=batch, device=device,
        precisions=_csv_list(precision, "--precision"), modes=_csv_list(mode, "--mode"), compile=compile_,
        timing=not complexity_only, throughput=throughput,
        max_batch=max_batch if max_batch is not None else (8 if device == "cpu" else 4096),
        warmup=warmup, iterations=iters, max_seconds=max_seconds, threads=threads,
        cudnn_benchmark=cudnn_benchmark, isolate=False if in_process else None,
        by_module=by_module, module_depth=depth)
    if console.is_terminal:
        with console.status("profiling ...") as status:
            rows = prof.profile(request, progress=lambda message: status.update(f"profiling {message}"))
    else:  # piped / logged: one line per step on stderr
        rows = prof.profile(request, progress=lambda message: err_console.print(f"profiling {message}", highlight=False))
    _print_profile_rows(rows)
    for row in rows:
        if row.get("_modules"):
            _print_module_tree(row["model"], row["variant"], row["_modules"])
        comparison = prof.authors_comparison(row)
        if comparison:
            console.print(
                f"IFDD train step vs the authors' code (batch 2, 16x224x224, CPU): ours "
                f"{comparison['ours_seconds']:.2f} s / {comparison['ours_peak_rss_gb']:.2f} GB peak RSS, authors "
                f"{comparison['authors_seconds']} s / {comparison['authors_peak_rss_gb']} GB -> "
                f"speed-up {comparison['speedup']:.2f}x, {comparison['memory_fraction']:.0%} of the memory "
                f"(target: speed-up >= 1.3x, memory <= 75%; the authors' figures are from an idle machine, "
                f"so compare on one too)", highlight=False)
    if not no_write:
        written = prof.write_rows(out, rows)
        console.print(f"appended {written} row(s) to {out}")
    if reported:
        _print_reported(prof, None, measured=rows)


def _print_profile_rows(rows: list[dict[str, Any]]) -> None:
    devices = sorted({str(r.get("device_name") or r.get("device") or "") for r in rows} - {""})
    table = Table(title="profile: complexity per clip (cpu, fp32, batch 1); timing per row",
                  caption=f"device: {'; '.join(devices)}" if devices else None)
    left = ("model", "measure", "prec", "B,C,T,H,W")
    for col in (*left, "params M", "GMACs fvcore", "GFLOPs torch", "median ms", "p90 ms", "clips/s", "peak MB"):
        table.add_column(col, justify="left" if col in left else "right", overflow="fold")
    for row in rows:
        ok = row.get("status") == "ok"
        table.add_row(f"{row['model']}:{row['variant']}", str(row.get("measure", "")), str(row.get("precision", "")),
                      str(row.get("input_shape", "")).replace("x", ","), _fmt(row.get("params_total", 0) / 1e6),
                      _fmt(row.get("gmacs_per_clip"), 3), _fmt(row.get("gflops_per_clip"), 3),
                      _fmt(row.get("latency_median_ms"), 1) if ok else "OOM",
                      _fmt(row.get("latency_p90_ms"), 1), _fmt(row.get("clips_per_s"), 2),
                      _fmt(row.get("peak_mem_mb"), 0))
    _wide_console().print(table)
    seen = set()
    for row in rows:
        key = (row["model"], row["variant"])
        if key in seen:
            continue
        seen.add(key)
        _wide_console().print(f"[dim]{row['model']}:{row['variant']}: {row.get('mac_counter')} {row.get('mac_counter_version')} "
                      f"(MACs), {row.get('flop_counter')} {row.get('flop_counter_version')} (FLOPs); "
                      f"extra handles: {row.get('extra_mac_handles') or 'none'}; "
                      f"ops counted as 0 MACs: {row.get('unsupported_ops') or 'none'}[/]", highlight=False)


def _print_module_tree(model: str, variant: str, modules: list[dict[str, Any]]) -> None:
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


def _print_reported(prof: Any, path: str | None, *, measured: list[dict[str, Any]] | None = None) -> None:
    """Reported-vs-measured table; registered models missing from the rows are counted now."""
    if measured is None:
        measured = []
        if path and Path(path).exists():
            from ifdd_bench.results import load

            measured = load(path, required=["model", "gmacs_per_clip"]).to_dict("records")
    with console.status("counting models not yet in the profile rows ...") as status:
        measured = prof.add_missing_complexity(measured, progress=lambda m: status.update(f"counting {m}"))
    rows = prof.reported_vs_measured(measured)
    table = Table(title="reported vs measured (per clip; ours: fvcore GMACs and torch GFLOPs)")
    for col in ("method", "reported params M", "reported GFLOPs", "reported input", "our params M",
                "our GMACs", "our GFLOPs", "our input", "GMACs / reported", "source"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["method"], _fmt(row["reported_params_m"]), _fmt(row["reported_gflops"]),
                      row["reported_input"], _fmt(row["measured_params_m"]), _fmt(row["measured_gmacs_fvcore"], 3),
                      _fmt(row["measured_gflops_torch"], 3), row["measured_input"] or "not measured",
                      _fmt(row["gmacs_over_reported"]), row["source"])
    _wide_console().print(table)


# ============================================================================================
# report (issue 8)


def _rich_table(table: Any, skip: tuple[str, ...] = ()) -> Table:
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


@command(main, "report")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Folder with runs.csv (and per_class.csv, profile.csv).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run folders with history.csv / predictions.csv (curves, confusion matrices).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output folder  [default: RESULTS_DIR/report]")
@click.option("--format", "formats", default="latex,md", show_default=True, help="Comma list of latex, md.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Also write PNG + PDF figures.")
@click.option("--allow-mixed", is_flag=True, help="Render rows of different protocols / train hashes together.")
@click.option("--reference", default="full", show_default=True,
              help="Variant (or baseline model) the paired statistics compare against.")
@click.option("--filter", "filters", multiple=True, metavar="COLUMN=VALUE",
              help="Keep only runs.csv rows with this value (repeatable), e.g. train_hash=1a2b3c4d.")
@click.option("--literature", "literature_path", default=None, type=click.Path(dir_okay=False),
              help="Reported-numbers CSV  [default: ifdd_bench/reports/literature.csv]")
@click.option("--readme", "readme_path", default=None, type=click.Path(dir_okay=False),
              help="Also rewrite this README's generated blocks (headline results, model table); loads torch.")
def report_cmd(results_dir: str, runs_dir: str, out_dir: str | None, formats: str, plots: bool, allow_mixed: bool,
               reference: str, filters: tuple[str, ...], literature_path: str | None, readme_path: str | None) -> None:
    """Render paper-ready tables (LaTeX, Markdown) and plots from the results CSVs (no torch)."""
    from ifdd_bench.reports.render import render_report

    command_line = "ifdd-bench report " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ifdd-bench report"
    out = console if console.is_terminal else Console(width=160)  # piped output: keep table rows on one line
    with console.status("rendering report ...") as status:
        result = render_report(results_dir, runs_dir, out_dir, formats=formats, plots=plots,
                               allow_mixed=allow_mixed, reference=reference, filters=filters,
                               literature_path=literature_path, command=command_line.strip(),
                               progress=lambda event: status.update(f"rendered {event['name']}"))
    for key in result.ablation_keys:
        out.print(_rich_table(result.tables[key]))
        for note in result.tables[key].notes:
            out.print(f"  [dim]{escape(note)}[/]", highlight=False)
    _print_paired_statistics(out, result)
    for item in result.skipped:
        out.print(f"[yellow]not rendered:[/] {item}", highlight=False)
    folder = Path(out_dir) if out_dir else Path(results_dir) / "report"
    out.print(f"wrote {len(result.files)} files to {folder} in {result.seconds:.2f} s", highlight=False)
    if readme_path:
        from ifdd_bench.readme_models import update_readme

        changed = update_readme(readme_path, result, folder)
        out.print(f"{readme_path}: {'updated ' + ', '.join(changed) if changed else 'generated blocks up to date'}",
                  highlight=False)


# ============================================================================================
# viz splits (issue 8)


@command(viz, "splits")
@click.option("--checkpoint", type=click.Path(exists=False), default=None,
              help="IFDD run folder (uses best.pt, else last.pt) or checkpoint file.")
@click.option("--capture", "capture_file", type=click.Path(dir_okay=False), default=None,
              help="Re-render from an existing capture.npz instead of running a checkpoint (no torch).")
@click.option("--clips", default=None, help="Comma list of clip ids to draw [default: the first 4 with an expression].")
@click.option("--split", default="test", show_default=True, help="train | val | test: the clips to capture.")
@click.option("--limit", type=int, default=None, help="Capture only the first N clips of the split.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder, when it moved since training (default: the one in the checkpoint).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: <run folder>/splits].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Expression tokens: token intensity >= threshold x the clip's peak (SynthDFER).")
def viz_splits_cmd(checkpoint, capture_file, clips, split, limit, data_root, out_dir, device, batch_size,
                   threshold) -> None:
    """Figure of ISSM's split per clip and, on SynthDFER, how often the detail group lands on
    the expression frames compared with the lazy even/odd split."""
    from ifdd_bench.errors import ConfigError
    from ifdd_bench.reports import slots

    if (checkpoint is None) == (capture_file is None):
        raise ConfigError("give either --checkpoint RUN_DIR_OR_FILE or --capture capture.npz")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")
    names = [c.strip() for c in clips.split(",") if c.strip()] if clips else None
    if capture_file is not None:
        cap_path = Path(capture_file)
        out = Path(out_dir) if out_dir else cap_path.parent
    else:
        from rich.progress import Progress

        from ifdd_bench.engine.capture import capture_slots, save_capture
        from ifdd_bench.engine.checkpoint import resolve_checkpoint

        ckpt_file = resolve_checkpoint(checkpoint)
        out = Path(out_dir) if out_dir else ckpt_file.parent / "splits"
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("capturing splits", total=None)

            def on_event(event: dict) -> None:
                if event.get("kind") == "capture":
                    progress.update(task, completed=event["done"], total=event["total"])

            result = capture_slots(ckpt_file, split=split, clips=names, limit=limit, data_root=data_root,
                                   batch_size=batch_size, device=device, progress=on_event)
        cap_path = save_capture(result, out)
    rendered = slots.render_slots(cap_path, out, clips=names, threshold=threshold)
    stats = rendered["stats"]
    if stats is not None:
        cap = slots.load_capture(cap_path)
        console.print(slots.statistics_markdown(stats, cap.meta), highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("no ground truth in this capture (real clips): figures only, no split statistics")
    console.print(f"wrote {len(rendered['files'])} files to {out}/ (capture: {cap_path})", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main()
