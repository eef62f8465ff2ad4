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
    """Rich progress bar fed by ``{"event": "data_progress", "stage", "done", "total"}`` events."""

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
        if event.get("event") != "data_progress":
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
    from ifdd_bench.data.loader_bench import model_consumption, run_loader_bench

    with _DataBar(err_console) as bar:
        rows = run_loader_bench(clips=clips, workers=workers, decoders=names, repeats=repeats, progress=bar)
    consumption = None
    if model != "none":
        try:
            consumption = [model_consumption(model, size=s) for s in (112, 224)]
        except BenchError as err:
            err_console.print(f"[yellow]model consumption skipped:[/] {err.message}")
    if as_json:
        click.echo(json.dumps({"loader": rows, "model": consumption}, indent=2))
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
    for item in consumption or []:
        console.print(f"{item['model']} training step ({item['geometry']}, batch {item['batch']}, CPU, "
                      f"{item['torch_threads']} threads): [bold]{item['train_clips_per_s']:.1f} clips/s[/]")


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



# ============================================================================================
# run train / predict (issue 5)


# ============================================================================================
# run ablation (issue 8)


# ============================================================================================
# profile (issue 7)


# ============================================================================================
# report (issue 8)


# ============================================================================================
# viz splits (issue 8)


if __name__ == "__main__":  # pragma: no cover
    main()
