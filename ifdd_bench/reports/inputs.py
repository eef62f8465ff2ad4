"""Read and validate the CSVs that reports are rendered from (pandas only, never torch).

Reports are pure functions of these files:

* ``<results>/runs.csv``       one row per finished run (``RunRow`` in :mod:`ifdd_bench.results`)
* ``<results>/per_class.csv``  per-class test recall of each run
* ``<results>/profile.csv``    complexity/latency measurements (columns read defensively)
* ``ifdd_bench/reports/literature.csv``  reported numbers of published methods, with sources
* ``<runs>/<run_id>/history.csv`` and ``predictions.csv``  per-epoch curves and test predictions
* ``<results>/probes.csv``     temporal-reliance probes of trained runs (``eval --perturb``)

Every problem a user can cause (missing or empty file, a CSV written by something else, a metric
that is not a fraction, an unknown variant name, a results file mixing protocols) raises a
:class:`~ifdd_bench.errors.BenchError` naming the file, line or column and what to do.

Example::

    >>> runs = load_runs("results/runs.csv")            # doctest: +SKIP
    >>> check_mixed(runs, allow_mixed=False)            # doctest: +SKIP
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ifdd_bench import results
from ifdd_bench.config import PERTURBATIONS
from ifdd_bench.results import LITERATURE_CSV
from ifdd_bench.errors import ConfigError, DataError, suggest
from ifdd_bench.models.ifdd_config import ABLATIONS, Ablation

#: columns a runs.csv must have for any table
RUN_REQUIRED = ("run_id", "model", "variant", "dataset", "fold", "seed", "protocol", "uar", "war")
#: columns a per_class.csv must have
PER_CLASS_REQUIRED = ("run_id", "model", "variant", "dataset", "fold", "seed", "class_index", "class_name", "recall")
#: columns of runs.csv that are optional for reports (filled with NaN / "" when absent)
RUN_OPTIONAL_TEXT = ("train_hash", "selection", "device")
RUN_OPTIONAL_NUMBERS = ("epochs", "selected_epoch", "val_uar", "val_war", "last_uar", "last_war",
                        "best_test_uar", "best_test_war", "params", "frames", "size", "num_classes", "views",
                        "train_seconds")
#: columns a probes.csv must have for the temporal-reliance table
PROBE_REQUIRED = ("run_id", "model", "variant", "dataset", "fold", "split", "perturbation", "clean_uar", "clean_war",
                  "uar", "war", "delta_uar", "delta_war")
#: its numbers: fractions in [0, 1], differences in [-1, 1] (intervals may be empty)
PROBE_FRACTIONS = ("clean_uar", "clean_war", "uar", "war")
PROBE_DIFFERENCES = ("delta_uar", "delta_war", "delta_uar_low", "delta_uar_high", "delta_war_low", "delta_war_high")
#: metric columns whose values must be fractions in [0, 1]
FRACTION_COLUMNS = ("uar", "war", "val_uar", "val_war", "last_uar", "last_war", "best_test_uar", "best_test_war")


DATASET_NAMES = {"synth": "SynthDFER", "dfew": "DFEW", "ferv39k": "FERV39k", "mafw": "MAFW"}


def dataset_name(key: str) -> str:
    """Display name of a dataset key (``dfew`` -> ``DFEW``); unknown keys are returned as is."""
    return DATASET_NAMES.get(str(key), str(key))


# --------------------------------------------------------------------------------------------
# IFDD variants: read from the model's own table (ifdd_bench.models.ifdd_config.ABLATIONS)


@dataclass(frozen=True)
class VariantInfo:
    """One IFDD ablation variant as a report row: its label and the components it switches on."""

    key: str  # the ABLATIONS name
    label: str  # paper-style row label (plain text)
    label_tex: str  # the same label in LaTeX
    split: str  # "issm" (content-aware) | "lazy" (even/odd) | "none" (no split at all)
    ladm: bool  # lifting-based aggregation-disentanglement module on
    lift: bool  # lifting loss L_lift on (lambda_lift > 0)
    block: int  # 0: component ablation rows, 1: knob variants of the full model
    note: str  # one line saying what the row changes


def _variant_info(key: str, ablation: Ablation) -> VariantInfo:
    switches = ablation.switches()
    return VariantInfo(key, ablation.label, ablation.label_tex or ablation.label, switches["split"],
                       switches["ladm"], switches["lift"], ablation.block, ablation.note)


#: rows in the order of an IFDD paper ablation table (component combinations, then knobs)
IFDD_VARIANTS: tuple[VariantInfo, ...] = tuple(_variant_info(k, a) for k, a in ABLATIONS.items())
VARIANTS_BY_KEY = {v.key: v for v in IFDD_VARIANTS}
VARIANT_ORDER = {v.key: i for i, v in enumerate(IFDD_VARIANTS)}


def is_ifdd_model(model: str) -> bool:
    """True for the IFDD family (``ifdd``, ``ifdd_tiny``, ...), whose variants use the table above."""
    return str(model) == "ifdd" or str(model).startswith("ifdd_")


def ifdd_models_in(frame: pd.DataFrame, *columns: str) -> list[str]:
    """Sorted IFDD-family model names in ``frame``'s ``model`` column (and any further ``columns``)."""
    names: set[str] = set()
    for column in ("model", *columns):
        names |= set(frame[column].unique())
    return sorted(m for m in names if is_ifdd_model(m))


# --------------------------------------------------------------------------------------------
# registered model names without importing torch


def _names_registered_in(path: Path) -> set[str]:
    """Names passed as a string literal to ``register_model(...)`` in one Python source file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if fname == "register_model" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            names.add(node.args[0].value)
    return names


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)  # finds the folder without running the package
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=1)
def registered_model_names() -> frozenset[str]:
    """Model names registered by ``ifdd_bench.models`` and ``baselines``, found by reading the source.

    The registry itself would import torch; reports must not, so the ``register_model("name", ...)``
    calls are read with :mod:`ast` instead. Returns an empty set when no source is found.
    """
    names: set[str] = set()
    for package in ("ifdd_bench.models", "baselines"):
        folder = _package_dir(package)
        if folder is None:
            continue
        for source in folder.rglob("*.py"):
            names |= _names_registered_in(source)
    return frozenset(names)


# --------------------------------------------------------------------------------------------
# runs.csv


def _line(index: int) -> int:
    """CSV line number (1-based, header is line 1) of a DataFrame row index from ``read_csv``."""
    return int(index) + 2


def _numeric(frame: pd.DataFrame, column: str, path: Path, *, required: bool) -> None:
    """Convert ``column`` to numbers in place; a non-number raises naming the line."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        idx = bad.idxmax()
        raise DataError(f"{path}, line {_line(idx)}: column {column!r} holds {raw[idx]!r}, not a number")
    if required and values.isna().any():
        idx = values.isna().idxmax()
        raise DataError(f"{path}, line {_line(idx)}: column {column!r} is empty",
                        hint="a finished run must have this value; remove the row or re-run it")
    frame[column] = values


def entry_key(model: str, variant: str) -> str:
    """Identifier of one table row: ``model:variant``."""
    return f"{model}:{variant}"


def _validate_names(frame: pd.DataFrame, path: Path, known_models: Iterable[str] | None) -> None:
    """IFDD rows need a variant of :data:`IFDD_VARIANTS`; other rows a registered model name."""
    known = set(known_models) if known_models is not None else set(registered_model_names())
    for idx, row in frame.iterrows():
        model, variant = str(row["model"]), str(row["variant"])
        if is_ifdd_model(model):
            if variant not in VARIANTS_BY_KEY:
                raise ConfigError(
                    f"{path}, line {_line(idx)}: unknown IFDD variant {variant!r}"
                    f"{suggest(variant, VARIANTS_BY_KEY)}; valid: {', '.join(VARIANTS_BY_KEY)}",
                    hint="add the variant to ABLATIONS in ifdd_bench/models/ifdd_config.py "
                         "if it is a new ablation row",
                )
        elif known and model not in known:
            raise ConfigError(
                f"{path}, line {_line(idx)}: unknown model {model!r}{suggest(model, known)}; "
                f"registered: {', '.join(sorted(known))}",
                hint="reports render IFDD variants and registered baselines only",
            )


def load_runs(path: str | os.PathLike, *, filters: Sequence[str] = (),
              known_models: Iterable[str] | None = None) -> pd.DataFrame:
    """Load and validate ``runs.csv``; returns one row per run with an ``entry`` column.

    ``filters`` are ``key=value`` strings (``train_hash=1a2b3c4d``, ``dataset=synth``) that keep
    only matching rows. Rows with the same ``run_id`` and ``train_hash`` (a cell written twice)
    keep the last one; the number dropped is in ``frame.attrs["duplicates"]``.
    ``known_models`` overrides the registered names (tests).
    """
    path = Path(path)
    frame = results.load(path, required=RUN_REQUIRED)
    if frame.empty:
        raise DataError(f"results file {path} has a header but no rows",
                        hint="run `ifdd-bench run ablation` (or train) first")
    for col in ("run_id", "model", "variant", "dataset", "protocol"):
        blank = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if blank.any():
            raise DataError(f"{path}, line {_line(blank.idxmax())}: column {col!r} is empty")
        frame[col] = frame[col].astype(str).str.strip()
    for col in ("fold", "seed", "uar", "war"):
        _numeric(frame, col, path, required=True)
    for col in RUN_OPTIONAL_NUMBERS:
        if col in frame.columns:
            _numeric(frame, col, path, required=False)
        else:
            frame[col] = np.nan
    for col in RUN_OPTIONAL_TEXT:
        frame[col] = frame[col].fillna("").astype(str) if col in frame.columns else ""
    for col in FRACTION_COLUMNS:
        values = frame[col]
        out = (values < 0) | (values > 1)
        if out.any():
            idx = out.idxmax()
            raise DataError(f"{path}, line {_line(idx)}: {col} = {values[idx]} is not a fraction in [0, 1]",
                            hint="runs.csv stores metrics as fractions; tables print percent")
    for col in ("fold", "seed"):
        whole = (frame[col] % 1 == 0) & (frame[col].abs() < 2 ** 63)
        if not whole.all():
            idx = (~whole).idxmax()
            raise DataError(f"{path}, line {_line(idx)}: {col} = {frame[col][idx]} is not a whole number",
                            hint=f"a run's {col} is an integer; fix or delete that row")
        frame[col] = frame[col].astype(int)
    frame = apply_filters(frame, filters, path)
    _validate_names(frame, path, known_models)
    before = len(frame)
    frame = frame.drop_duplicates(subset=["run_id", "train_hash"], keep="last").reset_index(drop=True)
    frame.attrs["duplicates"] = before - len(frame)
    frame.attrs["path"] = str(path)
    frame["entry"] = [entry_key(m, v) for m, v in zip(frame["model"], frame["variant"])]
    return frame


def apply_filters(frame: pd.DataFrame, filters: Sequence[str], path: Path | str = "runs.csv") -> pd.DataFrame:
    """Keep rows whose column equals the value of every ``key=value`` filter (string compare)."""
    for item in filters:
        if "=" not in item:
            raise ConfigError(f"filter {item!r} is not of the form column=value (e.g. train_hash=1a2b3c4d)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in frame.columns:
            raise ConfigError(f"filter column {key!r} is not in {path}{suggest(key, frame.columns)}; "
                              f"columns: {', '.join(frame.columns)}")
        as_text = frame[key].map(lambda v: _as_text(v))
        frame = frame[as_text == value]
        if frame.empty:
            raise DataError(f"no row of {path} has {key} = {value!r}",
                            hint="check the value with a look at the CSV")
    return frame.reset_index(drop=True)


def _as_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def protocol_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """Distinct (dataset, protocol, train_hash, selection) groups with their row counts and entries."""
    keys = ["dataset", "protocol", "train_hash", "selection"]
    rows = []
    for values, part in runs.groupby(keys, sort=True):
        rows.append(dict(zip(keys, values), rows=len(part), entries=sorted(part["entry"].unique())))
    return pd.DataFrame(rows, columns=keys + ["rows", "entries"])


def check_mixed(runs: pd.DataFrame, *, allow_mixed: bool) -> list[str]:
    """Refuse to compare rows of one dataset trained under different protocols or train hashes.

    Returns footnote lines describing the mix when ``allow_mixed`` is set (empty when nothing is
    mixed); otherwise raises :class:`DataError` listing the groups and how to filter them.
    """
    groups = protocol_groups(runs)
    notes = []
    for dataset, part in groups.groupby("dataset", sort=True):
        if len(part) < 2:
            continue
        described = "; ".join(
            f"protocol={r.protocol} train_hash={r.train_hash or '?'} selection={r.selection or '?'} "
            f"({r.rows} runs: {', '.join(r.entries[:4])}{' ...' if len(r.entries) > 4 else ''})"
            for r in part.itertuples())
        if not allow_mixed:
            first = part.iloc[0]
            raise DataError(
                f"{runs.attrs.get('path', 'runs.csv')} mixes protocols for dataset {dataset!r}: {described}",
                hint=f"compare like with like: add --filter train_hash={first.train_hash} (or protocol=...), "
                     "or pass --allow-mixed to render them together with a footnote",
            )
        notes.append(f"{dataset_name(dataset)} mixes protocols (rendered with --allow-mixed): {described}.")
    return notes


# --------------------------------------------------------------------------------------------
# per_class.csv, profile.csv, literature.csv


def load_per_class(path: str | os.PathLike, run_ids: Iterable[str] | None = None) -> pd.DataFrame | None:
    """Per-class recall rows (``None`` when the file does not exist), restricted to ``run_ids``.

    An empty (or ``nan``) recall is a class with no clip in that run's test split (small or custom
    splits, MAFW's rare classes): its recall is undefined and stays NaN. Such a row must not claim
    test clips: an empty recall with ``support`` > 0 raises :class:`DataError` naming the line.
    """
    path = Path(path)
    if not path.exists():
        return None
    frame = results.load(path, required=PER_CLASS_REQUIRED)
    for col in ("class_index", "fold", "seed"):
        _numeric(frame, col, path, required=True)
    _numeric(frame, "recall", path, required=False)  # NaN: class absent from the test split
    if "support" in frame.columns:
        _numeric(frame, "support", path, required=False)
        claimed = frame["recall"].isna() & (frame["support"] > 0)
        if claimed.any():
            idx = claimed.idxmax()
            raise DataError(f"{path}, line {_line(idx)}: recall is empty but support is "
                            f"{frame['support'][idx]:g} test clips",
                            hint="an empty recall means the class had no test clip; fix or re-run the run")
    out = (frame["recall"] < 0) | (frame["recall"] > 1)
    if out.any():
        raise DataError(f"{path}, line {_line(out.idxmax())}: recall is not a fraction in [0, 1]")
    frame["class_index"] = frame["class_index"].astype(int)
    frame["entry"] = [entry_key(m, v) for m, v in zip(frame["model"], frame["variant"])]
    if run_ids is not None:
        frame = frame[frame["run_id"].isin(set(run_ids))]
    return frame.reset_index(drop=True)


def load_probes(path: str | os.PathLike, runs: pd.DataFrame) -> pd.DataFrame | None:
    """``probes.csv`` rows of the ``runs`` (``None`` when the file is missing or empty).

    Kept: rows of a run in ``runs`` probed on its own test split (its dataset and fold,
    ``split = test``); of a run probed twice with one perturbation, the last row. A row with an
    unknown perturbation or a number out of range raises :class:`DataError` naming the line.
    """
    path = Path(path)
    frame = load_optional_csv(path, required=PROBE_REQUIRED)
    if frame is None:
        return None
    for col in ("run_id", "model", "variant", "dataset", "split", "perturbation"):
        frame[col] = frame[col].fillna("").astype(str).str.strip()
    unknown_name = ~frame["perturbation"].isin(PERTURBATIONS)
    if unknown_name.any():
        idx = unknown_name.idxmax()
        name = frame["perturbation"][idx]
        raise DataError(f"{path}, line {_line(idx)}: unknown perturbation {name!r}{suggest(name, PERTURBATIONS)}; "
                        f"valid: {', '.join(PERTURBATIONS)}")
    _numeric(frame, "fold", path, required=True)
    for col in PROBE_FRACTIONS + ("delta_uar", "delta_war"):
        _numeric(frame, col, path, required=True)
    for col in PROBE_DIFFERENCES[2:]:
        if col in frame.columns:
            _numeric(frame, col, path, required=False)
        else:
            frame[col] = np.nan
    for cols, low, what in ((PROBE_FRACTIONS, 0.0, "a fraction in [0, 1]"),
                            (PROBE_DIFFERENCES, -1.0, "a difference of fractions in [-1, 1]")):
        for col in cols:
            out = (frame[col] < low) | (frame[col] > 1)
            if out.any():
                idx = out.idxmax()
                raise DataError(f"{path}, line {_line(idx)}: {col} = {frame[col][idx]} is not {what}",
                                hint="probes.csv stores metrics as fractions; tables print percent")
    own = runs[["run_id", "dataset", "fold"]].drop_duplicates("run_id", keep="last")
    frame["fold"] = frame["fold"].astype(int)
    frame = frame[frame["split"] == "test"].merge(own, on=["run_id", "dataset", "fold"])
    frame = frame.drop_duplicates(subset=["run_id", "perturbation"], keep="last").reset_index(drop=True)
    if frame.empty:
        return None
    frame["entry"] = [entry_key(m, v) for m, v in zip(frame["model"], frame["variant"])]
    return frame


def load_optional_csv(path: str | os.PathLike, *, required: Sequence[str] = ()) -> pd.DataFrame | None:
    """A CSV read defensively: ``None`` if missing or empty; DataError if unreadable or foreign."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    frame = results.load(path, required=required)
    return frame if not frame.empty else None


#: canonical profile column <- the names profile.csv may use (``ifdd_bench/engine/profile.py`` first)
PROFILE_ALIASES = {
    "params": ("params_total", "params"),
    "gmacs": ("gmacs_per_clip", "gmacs"),
    "gflops": ("gflops_per_clip", "gflops"),
    "counter": ("mac_counter", "counter"),
    "counter_version": ("mac_counter_version", "counter_version"),
    "unit": ("mac_unit", "unit"),
    "flop_counter": ("flop_counter",),
    "flop_counter_version": ("flop_counter_version",),
}
_DIMS = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+)x(\d+)")


def load_profile(path: str | os.PathLike) -> pd.DataFrame | None:
    """``profile.csv`` normalised to canonical columns (missing ones become NaN / "").

    Canonical: model, variant, batch, channels, frames, height, width, views, params, gmacs,
    gflops, counter, counter_version, unit, flop_counter, precision, mode, and ``per_clip`` (True
    when the file says its MACs are per clip, as ``gmacs_per_clip`` does, so any row's batch is
    fine). The complexity geometry is read from ``complexity_input`` (``1x3x16x112x112 (...)``)
    when present. Rows whose ``status`` is not ``ok`` (out-of-memory points) are dropped.
    """
    frame = load_optional_csv(path, required=("model",))
    if frame is None:
        return None
    if "status" in frame.columns:
        frame = frame[frame["status"].fillna("ok").astype(str).isin(["ok", ""])].copy()
    frame["per_clip"] = "gmacs_per_clip" in frame.columns
    for canonical, names in PROFILE_ALIASES.items():
        source = next((n for n in names if n in frame.columns), None)
        numeric = canonical in ("params", "gmacs", "gflops")
        if source is None:
            frame[canonical] = np.nan if numeric else ""
        elif numeric:
            frame[canonical] = pd.to_numeric(frame[source], errors="coerce")
        else:
            frame[canonical] = frame[source].fillna("").astype(str)
    for col in ("batch", "channels", "frames", "height", "width", "views"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame.columns else np.nan
    if "complexity_input" in frame.columns:  # the geometry the MACs were counted at
        dims = frame["complexity_input"].fillna("").astype(str).str.extract(_DIMS).astype(float)
        has = dims.notna().all(axis=1)
        for k, col in enumerate(("batch", "channels", "frames", "height", "width")):
            frame.loc[has, col] = dims.loc[has, k]
    for col in ("variant", "device", "precision", "mode"):
        frame[col] = frame[col].fillna("").astype(str) if col in frame.columns else ""
    frame.loc[frame["variant"] == "", "variant"] = "full"
    return frame.reset_index(drop=True)


def load_literature(path: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """The reported-numbers table (``ifdd_bench/reports/literature.csv`` by default)."""
    frame = load_optional_csv(path or LITERATURE_CSV, required=("method",))
    if frame is None:
        return None
    for col in ("model_key", "venue", "gflops_unit_note", "input", "source", "note"):
        frame[col] = frame[col].fillna("").astype(str) if col in frame.columns else ""
    for col in ("params_m", "gflops_reported", "views", "dfew_uar", "dfew_war", "ferv39k_uar", "ferv39k_war",
                "mafw_uar", "mafw_war"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame.columns else np.nan
    return frame


# --------------------------------------------------------------------------------------------
# run folders: history.csv and predictions.csv


def _read_run_files(runs_dir: str | os.PathLike, runs: pd.DataFrame, filename: str) -> tuple[pd.DataFrame | None, list[str]]:
    """Concatenate ``<runs_dir>/<run_id>/<filename>`` of every run with its keys; list unreadable ones."""
    parts, problems = [], []
    folder = Path(runs_dir)
    for row in runs[["run_id", "entry", "model", "variant", "dataset", "fold", "seed"]].itertuples(index=False):
        path = folder / row.run_id / filename
        if not path.exists() or path.stat().st_size == 0:
            continue
        try:
            part = pd.read_csv(path)
        except Exception as err:  # noqa: BLE001 - any parser error means "skip and say so"
            problems.append(f"{path}: {err}")
            continue
        for key, value in row._asdict().items():
            part[key] = value
        parts.append(part)
    if not parts:
        return None, problems
    return pd.concat(parts, ignore_index=True), problems


def load_histories(runs_dir: str | os.PathLike, runs: pd.DataFrame) -> tuple[pd.DataFrame | None, list[str]]:
    """Per-epoch ``history.csv`` rows of the given runs (``None`` when no run folder has one)."""
    frame, problems = _read_run_files(runs_dir, runs, "history.csv")
    if frame is not None and "epoch" not in frame.columns:
        problems.append("history.csv files have no 'epoch' column; training curves skipped")
        return None, problems
    if frame is not None:
        for col in frame.columns:
            if col not in ("run_id", "entry", "model", "variant", "dataset"):
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame, problems


def load_predictions(runs_dir: str | os.PathLike, runs: pd.DataFrame) -> tuple[pd.DataFrame | None, list[str]]:
    """Test predictions (``clip_id,label,pred,prob_*``) of the given runs, or ``None``."""
    frame, problems = _read_run_files(runs_dir, runs, "predictions.csv")
    if frame is None:
        return None, problems
    missing = [c for c in ("label", "pred") if c not in frame.columns]
    if missing:
        problems.append(f"predictions.csv files lack column(s) {', '.join(missing)}; confusion matrices skipped")
        return None, problems
    frame["label"] = pd.to_numeric(frame["label"], errors="coerce")
    frame["pred"] = pd.to_numeric(frame["pred"], errors="coerce")
    frame = frame.dropna(subset=["label", "pred"])
    frame["label"] = frame["label"].astype(int)
    frame["pred"] = frame["pred"].astype(int)
    return frame, problems
