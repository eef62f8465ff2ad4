"""The README's generated blocks: the model table (from the registry) and writing both blocks.

Outside :mod:`ifdd_bench.reports` because listing the registry imports every model family, and
with it torch, which the report package must never import. The headline text itself is built,
torch-free, by :func:`ifdd_bench.reports.readme.headline_markdown`; this module adds the model
table and writes the README (``ifdd-bench report --readme README.md``).

Example::

    >>> result = render_report("results", "runs", "results/report")                 # doctest: +SKIP
    >>> update_readme("README.md", result, "results/report")                         # doctest: +SKIP
    ['ablation-results', 'model-table']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ifdd_bench import registry, sweep
from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.errors import BenchError
from ifdd_bench.reports import readme

#: families listed first (the model the toolkit is about), then the rest alphabetically
_FIRST_FAMILIES = ("ifdd",)
#: a trailing geometry in a registry description (", 16x112"), dropped: the table has a geometry column
_TRAILING_GEOMETRY = re.compile(r",?\s*\(?\d+x\d+(?:x\d+)?\)?\s*$")
#: more variants than this are counted instead of listed
_MAX_LISTED = 3


def _variants_cell(variants: list[str]) -> str:
    """Variants besides ``full``: listed when few, counted (with the first few) when many."""
    others = [v for v in variants if v != "full"]
    if not others:
        return "–"
    names = [f"`{v}`" for v in others]
    if len(names) <= _MAX_LISTED:
        return ", ".join(names)
    return f"{len(names)}: {', '.join(names[:_MAX_LISTED])}, …"


def _short(description: str) -> str:
    """The registry description without its trailing geometry, Markdown-safe."""
    return _TRAILING_GEOMETRY.sub("", description).strip().replace("|", r"\|")


def model_table_markdown() -> str:
    """Markdown table of every model the toolkit registers: model, family, geometry (T×size²), variants, description.

    Read from the registry (:func:`ifdd_bench.registry.list_models` / ``get_entry``), so a newly
    registered model appears by being registered; the default model of ``ifdd-bench run ablation``
    (:data:`ifdd_bench.sweep.DEFAULT_MODEL`) says so. Deterministic; imports torch (through the
    model families).
    """
    entries = [registry.get_entry(name) for name in registry.library_models()]
    entries.sort(key=lambda e: (e.family not in _FIRST_FAMILIES, e.family, e.name))
    lines = ["| model | family | geometry (T×size²) | variants besides `full` | description |",
             "|:--|:--|:-:|:--|:--|"]
    for entry in entries:
        cfg = entry.default_config()
        description = _short(entry.description)
        if entry.name == sweep.DEFAULT_MODEL:
            description += "; the default of `ifdd-bench run ablation`"
        lines.append(f"| `{entry.name}` | {entry.family} | {cfg.frames}×{cfg.img_size}² | "
                     f"{_variants_cell(list(entry.ablations))} | {description} |")
    return "\n".join(lines) + "\n"


def readme_blocks(result, *, link_dir: str = "results/report") -> dict[tuple[str, str], str]:
    """Both generated blocks, ``{(start marker, end marker): body}``, for a rendered report.

    ``link_dir`` is the report folder as the README links it (relative to the README). The
    headline describes the defaults of ``ifdd-bench run ablation`` (``ifdd_bench.sweep``).
    """
    headline = readme.headline_markdown(
        result, model=sweep.DEFAULT_MODEL, variants=sweep.DEFAULT_VARIANTS,
        baselines=sweep.DEFAULT_SYNTH_BASELINES, dataset=sweep.DEFAULT_DATASET,
        folds=sweep.DEFAULT_FOLDS, seeds=sweep.DEFAULT_SEEDS, link_dir=link_dir)
    return {(readme.HEADLINE_START, readme.HEADLINE_END): headline,
            (readme.MODEL_TABLE_START, readme.MODEL_TABLE_END): model_table_markdown()}


def update_readme(path: str | os.PathLike, result, out_dir: str | os.PathLike) -> list[str]:
    """Write the headline and model-table blocks into the README at ``path``, atomically.

    ``result`` is what :func:`~ifdd_bench.reports.render.render_report` returned for ``out_dir``.
    Links point from the README's folder to ``out_dir``; the headline's figure must exist there
    (render with plots). Nothing outside the two blocks changes, and a missing or misordered
    marker, a missing README or a missing figure raises :class:`BenchError` before anything is
    written. Returns the names of the blocks whose text changed (``[]``: already up to date).
    """
    path = Path(path)
    readme.check_readme(path)
    figure = Path(out_dir) / "plots" / f"{readme.HEADLINE_FIGURE}.png"
    if not figure.is_file():
        raise BenchError(f"the README headline links {figure}, which does not exist; render with plots "
                         "(leave out --no-plots)")
    link_dir = Path(os.path.relpath(Path(out_dir).resolve(), path.resolve().parent)).as_posix()
    text = path.read_text(encoding="utf-8")
    new, changed = text, []
    for (start, end), body in readme_blocks(result, link_dir=link_dir).items():
        if readme.block_text(new, start, end, path=str(path)) != body:
            changed.append(start.strip("<!-> ").split(":")[0])
        new = readme.replace_block(new, start, end, body, path=str(path))
    if new != text:
        write_text_atomic(path, new)
    return changed
