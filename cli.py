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
