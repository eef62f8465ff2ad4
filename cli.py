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
