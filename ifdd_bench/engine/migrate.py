"""Rename run folders of the older identity scheme to run ids with a recipe hash.

Before run-id scheme 2 a run id was ``{model}-{variant}-{dataset}-f{fold}-s{seed}-{protocol}``:
runs with other training settings mapped to the same folder. :func:`migrate_runs` rebuilds each
old folder's :class:`~ifdd_bench.config.RunSpec` from its ``config.json`` (model, variant, data and
train configs; model-config overrides recovered as the fields that differ from the registered
preset), renames the folder to ``spec.run_id``, rewrites the run id in ``config.json``,
``result.json`` and the checkpoints, and renames the matching rows of ``runs.csv`` /
``per_class.csv`` (a row matches when its run id, train hash and finish time are the folder's).

::

    report = migrate_runs("runs", "results")
    report.renamed      # [(old_id, new_id), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ifdd_bench.config import RUN_ID_SCHEME, DataConfig, RunSpec, TrainConfig, from_dict, to_dict
from ifdd_bench.engine import runfiles as F
from ifdd_bench.errors import BenchError, ConfigError
from ifdd_bench.registry import INIT_FIELDS, resolve_config
from ifdd_bench.results import PER_CLASS_CSV, RUNS_CSV, rewrite_rows


@dataclass
class MigrationReport:
    """What :func:`migrate_runs` did: renamed folders, folders it left (with why), rows renamed."""

    renamed: list[tuple[str, str]] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0


def is_legacy(run_dir: Path) -> bool:
    """True for a run folder whose ``config.json`` predates run-id scheme 2, or cannot be read as
    one (so that migration lists it instead of passing over it); False without a ``config.json``."""
    path = run_dir / F.CONFIG
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
        return int(config.get("run_id_scheme", 1)) < RUN_ID_SCHEME
    except (OSError, ValueError, TypeError, AttributeError):
        return True


def legacy_folders(runs_dir: str | Path) -> list[Path]:
    """Run folders of the older identity scheme under ``runs_dir`` (sorted)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_legacy(p))


def spec_of(config: dict[str, Any], runs_dir: str, results_dir: str) -> RunSpec:
    """The RunSpec a run folder's ``config.json`` describes (model overrides recovered by diff)."""
    data = from_dict(DataConfig, config["data_config"], strict=False)
    train = from_dict(TrainConfig, config["train_config"], strict=False)
    stored = config["model_config"]
    if "model_overrides" in config:
        pairs = tuple((k, v) for k, v in config["model_overrides"])
    else:
        preset = to_dict(resolve_config(config["model"], config["variant"], num_classes=len(config["classes"]),
                                        frames=data.frames, img_size=data.size))
        pairs = tuple((k, stored[k]) for k in stored if k not in INIT_FIELDS and stored[k] != preset.get(k))
        pairs = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in pairs)
    return RunSpec(config["model"], variant=config["variant"], data=data, train=train, model_overrides=pairs,
                   runs_dir=runs_dir, results_dir=results_dir)


def _result(run_dir: Path) -> dict | None:
    """``result.json`` of a run folder, done marker or not (committed records carry no marker);
    ``None`` when absent; one that is not a result raises :class:`ValueError`."""
    if not (run_dir / F.RESULT).is_file():
        return None
    stored = json.loads((run_dir / F.RESULT).read_text())
    if not isinstance(stored, dict) or not isinstance(stored.get("row"), dict):
        raise ValueError(f"{run_dir / F.RESULT} holds no result row")
    return stored


def _rewrite_json(path: Path, new: str) -> None:
    if not path.exists():
        return
    data = json.loads(path.read_text())
    if path.name == F.CONFIG:
        data["run_id"], data["run_id_scheme"] = new, RUN_ID_SCHEME
    else:  # result.json: the row and the per-class rows
        data["row"]["run_id"] = new
        for row in data.get("per_class", []):
            row["run_id"] = new
    F.write_json(path, data)


def _rewrite_checkpoints(run_dir: Path, new: str) -> None:
    from ifdd_bench.engine.checkpoint import BEST, LAST, load_checkpoint, save_atomic

    for name in (LAST, BEST, F.BEST_PENDING):
        path = run_dir / name
        if path.exists():
            ckpt = load_checkpoint(path)
            ckpt["run_id"], ckpt["run_id_scheme"] = new, RUN_ID_SCHEME
            save_atomic(ckpt, path)


def migrate_runs(runs_dir: str | Path = "runs", results_dir: str | Path = "results", *,
                 dry_run: bool = False) -> MigrationReport:
    """Rename every older-scheme run folder under ``runs_dir`` and its rows in ``results_dir``.

    A folder whose new name is taken, or whose ``config.json`` cannot be read as a run, is left
    as it is and listed in ``report.left``. With ``dry_run`` nothing is written.
    """
    report = MigrationReport()
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"--runs-dir {runs_dir} is not a folder", hint="name the folder that holds the run folders")
    renames: dict[tuple[str, str, str], str] = {}  # (old id, train hash, finished_at) -> new id
    for folder in legacy_folders(runs_dir):
        try:
            config = json.loads((folder / F.CONFIG).read_text())
            spec = spec_of(config, str(runs_dir), str(results_dir))
            stored = _result(folder)
        except (KeyError, TypeError, ValueError, AttributeError, BenchError) as err:
            report.left.append((folder.name, f"not a readable run record ({type(err).__name__}: {err})"))
            continue
        old, new = str(config.get("run_id", folder.name)), spec.run_id
        target = runs_dir / new
        if target.exists() and target != folder:
            report.left.append((folder.name, f"{target} exists already"))
            continue
        key = (old, config.get("train_hash", ""), stored["row"].get("finished_at", "")) if stored else None
        if not dry_run:
            try:  # config.json last: it marks a folder as migrated, so a failure before it is retried
                _rewrite_checkpoints(folder, new)
                _rewrite_json(folder / F.RESULT, new)
                if target != folder:
                    folder.rename(target)
                _rewrite_json(target / F.CONFIG, new)
            except (OSError, BenchError) as err:
                report.left.append((folder.name, f"{type(err).__name__}: {err}; re-run to retry"))
                continue
        report.renamed.append((old, new))
        if key:
            renames[key] = new
    if dry_run or not renames:
        return report
    finished = {(old, at): new for (old, _, at), new in renames.items()}

    def runs_row(row: dict[str, str]) -> dict[str, str]:
        new = renames.get((row.get("run_id", ""), row.get("train_hash", ""), row.get("finished_at", "")))
        return {**row, "run_id": new} if new else row

    def class_row(row: dict[str, str]) -> dict[str, str]:
        new = finished.get((row.get("run_id", ""), row.get("finished_at", "")))
        return {**row, "run_id": new} if new else row

    report.rows = rewrite_rows(results_dir / RUNS_CSV, runs_row) + rewrite_rows(results_dir / PER_CLASS_CSV,
                                                                                    class_row)
    return report
