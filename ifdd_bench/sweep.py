"""Ablation sweeps: expand a grid of runs, skip the finished cells, run the rest.

A sweep is the product ``variants x folds x seeds`` of one model (plus optional baseline models
trained under the same protocol). Each product element is a *cell*, i.e. one :class:`RunSpec`
that the engine trains with ``train_run``. A cell is *finished* when ``<results_dir>/runs.csv``
holds a row with the cell's ``run_id`` and the same ``train_hash`` (and input frames/size), so
re-running an interrupted or partly failed sweep trains only the missing cells; a half-trained
cell resumes from its ``last.pt`` inside the engine.

Executors:

* ``local`` (default): cells one after another in this process, or ``jobs=N`` worker processes
  (spawned, each with ``cores // N`` torch threads; once fewer than N cells are left running,
  they take the freed cores and relay the engine's progress events to the caller's ``progress``;
  see :class:`ifdd_bench.workers.CellPool`).
* ``submitit``: one submitit job per cell through ``submitit.AutoExecutor`` (Slurm when present,
  local processes otherwise); job ids, states and errors go to
  ``<runs_dir>/sweeps/<sweep_id>/jobs.csv``.

Every executor records each attempt of each cell in that ``jobs.csv`` (status ``done``,
``failed`` with the error, ``skipped``), so failed cells are reported and re-runnable. Result rows
are written by the engine through :func:`ifdd_bench.results.append_rows`, which is file-locked and
atomic, so parallel workers never tear ``runs.csv``.

Example::

    >>> plan = plan_sweep(variants="full,no_issm", folds="1", seeds="0", epochs=1)
    >>> [c.run_id for c in plan.cells()][:1]
    ['ifdd_tiny_pretext-full-synth-f1-s0-unified-61ce8c09']
    >>> outcome = run_sweep(plan)            # trains what runs.csv lacks
    >>> summarize(plan)                      # mean +- std UAR/WAR per variant
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from filelock import FileLock

from ifdd_bench import registry
from ifdd_bench.atomic import write_text_atomic
from ifdd_bench.config import DataConfig, RunSpec, TrainConfig, parse_overrides, to_dict, train_hash
from ifdd_bench.data.labels import NUM_FOLDS
from ifdd_bench.errors import ConfigError, suggest
from ifdd_bench.spec import build_run_spec, check_dataset, is_embedded, shared_overrides
from ifdd_bench.results import PER_CLASS_CSV, RUNS_CSV, append_rows
from ifdd_bench.workers import CellPool, Progress, Runner, default_runner, pop_cell_seconds, run_cell

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# defaults of ``ifdd-bench run ablation`` with no arguments
#
# The no-argument sweep must finish in <= 15 minutes on the 2-core CPU machine the toolkit is
# developed on and still separate the IFDD variants measurably on the embedded SynthDFER preset.
# These numbers are tuned together with SynthDFER's difficulty; change them here (and in the
# README section that quotes them), nowhere else.

#: model of the default ablation: CPU-sized IFDD whose embedding + backbone start from the shipped
#: facial-motion pretext (the CPU stand-in for the paper's K400 initialisation; from scratch,
#: ifdd_tiny stays near chance within this budget -- README, "Default ablation on SynthDFER")
DEFAULT_MODEL = "ifdd_tiny_pretext"
#: model used when ``--data-root`` points at a real dataset (paper geometry, GPU-sized)
DEFAULT_REAL_MODEL = "ifdd"
#: the IFDD ablation rows (spec 10.2) in table order, plus the GAP control
DEFAULT_VARIANTS = ("baseline", "no_ladm", "no_issm_no_lift", "no_issm", "no_lift", "full", "gap")
DEFAULT_DATASET = "synth"
DEFAULT_PROTOCOL = "unified"
#: folds / seeds of the embedded CPU sweep (real datasets default to every official fold)
DEFAULT_FOLDS = (1,)
DEFAULT_SEEDS = (0,)
#: the embedded benchmark's train/data recipe lives in ifdd_bench.spec (EMBEDDED_TRAIN, EMBEDDED_DATA),
#: so ``run train`` and every sweep cell get the same one
#: cells run at once for the embedded CPU sweep: one torch thread each beats two threads per cell
#: for op-overhead-bound tiny models (real datasets default to one cell at a time)
DEFAULT_SYNTH_JOBS = 2
# Budget behind these numbers (one torch thread per cell, torch 2.14, 2-core AVX2-only EPYC): a
# training step of ifdd_tiny(_pretext) at 16x64x64 costs ~34 ms per clip; fold 1 of the default
# preset has 1,081 train / 119 val / 300 test clips, so one epoch of one cell is ~33 s of training
# plus ~4 s of evaluation; 5 epochs with two cells at a time, the last one taking both cores once its
# partner finishes (workers.CoreShare), fit the 15-minute budget (docs/notebook/default-ablation.md
# has the measured times). Re-measure when SynthDFER or the tiny geometry change.

EXECUTORS = ("local", "submitit")
JOB_COLUMNS = (
    "sweep_id", "run_id", "attempt", "role", "model", "variant", "dataset", "fold", "seed",
    "train_hash", "executor", "job_id", "status", "error", "started_at", "finished_at",
    "seconds", "log",
)


# --------------------------------------------------------------------------------------------
# parsing the grid axes


def parse_int_set(text: str | Iterable[int] | int | None, what: str) -> tuple[int, ...]:
    """Parse ``"1-5"``, ``"0,1,2"``, ``"1,3-4"`` (or an int / iterable) into sorted unique ints.

    Malformed items raise :class:`ConfigError` naming ``what`` (``--folds``, ``--seeds``).
    """
    if text is None:
        return ()
    if isinstance(text, int):
        return (text,)
    if not isinstance(text, str):
        return tuple(sorted({int(v) for v in text}))
    values: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            if dash and lo.strip():
                start, stop = int(lo), int(hi)
                if stop < start:
                    raise ConfigError(f"{what}: range {part!r} runs backwards; write {stop}-{start}")
                values.update(range(start, stop + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not an integer or a range like 1-5") from None
    return tuple(sorted(values))


def parse_folds(text: str | Iterable[int] | int | None, dataset: str) -> tuple[int, ...]:
    """Folds of ``dataset`` to sweep; ``None`` -> every official fold; out-of-range folds raise."""
    count = NUM_FOLDS[dataset]
    folds = parse_int_set(text, "--folds") if text is not None else tuple(range(1, count + 1))
    bad = [f for f in folds if not 1 <= f <= count]
    if bad:
        valid = "1" if count == 1 else f"1-{count}"
        raise ConfigError(f"--folds: {dataset} has folds {valid}; got {', '.join(map(str, bad))}")
    if not folds:
        raise ConfigError("--folds selects no fold; give e.g. --folds 1 or --folds 1-5")
    return folds


def parse_seeds(text: str | Iterable[int] | int | None) -> tuple[int, ...]:
    """Seeds to sweep (``None`` -> :data:`DEFAULT_SEEDS`); negative or empty selections raise."""
    seeds = parse_int_set(text, "--seeds") if text is not None else DEFAULT_SEEDS
    if not seeds:
        raise ConfigError("--seeds selects no seed; give e.g. --seeds 0 or --seeds 0,1,2")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds must be >= 0, got {', '.join(map(str, seeds))}")
    return seeds


def _split_names(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [i.strip() for i in items if i and i.strip()]


def resolve_variants(model: str, text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Variant names of ``model`` to sweep: a comma list, ``"all"``, or ``None`` for the defaults.

    The defaults are :data:`DEFAULT_VARIANTS` for IFDD models and ``("full",)`` otherwise.
    Unknown names raise :class:`ConfigError` listing the model's variants.
    """
    available = list(registry.ablations(model))
    if text is None:
        wanted = [v for v in DEFAULT_VARIANTS if v in available] or available[:1]
    else:
        names = _split_names(text)
        wanted = available if names == ["all"] else names
    if not wanted:
        raise ConfigError("--variants selects no variant; give e.g. --variants full,no_issm or --variants all")
    for name in wanted:
        if name not in available:
            raise ConfigError(f"--variants: unknown variant {name!r} for model {model!r}"
                              f"{suggest(name, available)}; valid: {', '.join(available)}, all")
    return tuple(dict.fromkeys(wanted))  # drop repeats, keep order


def resolve_baselines(text: str | Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """Parse ``"former_dfer_tiny,r3d_18:full"`` into ``(model, variant)`` pairs (variant ``full``)."""
    pairs = []
    for item in _split_names(text):
        name, _, variant = item.partition(":")
        entry = registry.get_entry(name.strip())  # raises on unknown model names
        variant = variant.strip() or ("full" if "full" in entry.ablations else next(iter(entry.ablations)))
        if variant not in entry.ablations:
            raise ConfigError(f"--baselines: unknown variant {variant!r} for model {name!r}"
                              f"{suggest(variant, entry.ablations)}; valid: {', '.join(entry.ablations)}")
        pairs.append((entry.name, variant))
    return tuple(dict.fromkeys(pairs))


# --------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its spec and whether it is an ablation variant or a baseline."""

    spec: RunSpec
    role: str = "variant"  # variant | baseline

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def train_hash(self) -> str:
        return train_hash(self.spec.train)

    @property
    def key(self) -> tuple[str, str]:
        """What a result row must match for this cell to count as finished."""
        return (self.run_id, self.train_hash)


@dataclass(frozen=True)
class SweepPlan:
    """The grid of a sweep, as asked; :meth:`cells` expands it in table order (variant, fold, seed)
    and builds every cell's spec with :func:`ifdd_bench.spec.build_run_spec`."""

    model: str
    variants: tuple[str, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    dataset: str = DEFAULT_DATASET
    data_root: str | None = None
    protocol: str = DEFAULT_PROTOCOL
    epochs: int | None = None
    overrides: tuple[str, ...] = ()  # key=value strings for every variant cell
    baselines: tuple[tuple[str, str], ...] = ()
    runs_dir: str = "runs"
    results_dir: str = "results"

    def spec(self, model: str, variant: str, fold: int, seed: int, role: str = "variant") -> RunSpec:
        """The spec of one cell; baseline cells take the train and data overrides only."""
        overrides = self.overrides if role == "variant" else shared_overrides(self.overrides, self.model,
                                                                              self.variants[0])
        return build_run_spec(model, variant, dataset=self.dataset, data_root=self.data_root, fold=fold, seed=seed,
                              protocol=self.protocol, epochs=self.epochs, overrides=overrides,
                              runs_dir=self.runs_dir, results_dir=self.results_dir)

    def cells(self) -> list[Cell]:
        """Every cell: variants first, then baselines, each over folds x seeds."""
        models = [(self.model, v, "variant") for v in self.variants]
        models += [(m, v, "baseline") for m, v in self.baselines]
        return [Cell(self.spec(model, variant, fold, seed, role), role)
                for model, variant, role in models for fold in self.folds for seed in self.seeds]

    @property
    def first(self) -> RunSpec:
        """The spec of the first variant cell: the sweep's protocol, recipe and geometry as shown."""
        return self.spec(self.model, self.variants[0], self.folds[0], self.seeds[0])

    @property
    def data(self) -> DataConfig:
        """Data config of the first variant cell (baselines keep their own native geometry)."""
        return self.first.data

    @property
    def train(self) -> TrainConfig:
        """Train config of the first variant cell (every cell shares it, up to the seed)."""
        return self.first.train

    @property
    def model_overrides(self) -> tuple[tuple[str, Any], ...]:
        """Typed model-config overrides of the variant cells."""
        return self.first.model_overrides

    @property
    def sweep_id(self) -> str:
        """Stable id of the grid: the same command always lands in the same sweep folder."""
        desc = self.describe()
        desc.pop("runs_dir"), desc.pop("results_dir")
        digest = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.model}-{self.dataset}-{digest}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the grid (written to ``sweep.json``)."""
        first = self.first
        data = to_dict(first.data)
        data.pop("fold")
        train = to_dict(first.train)
        train.pop("seed")
        return {
            "model": self.model, "variants": list(self.variants),
            "baselines": [f"{m}:{v}" for m, v in self.baselines],
            "dataset": self.dataset, "folds": list(self.folds), "seeds": list(self.seeds),
            "train_hash": train_hash(first.train), "recipe_hash": first.recipe_hash, "train": train, "data": data,
            "model_overrides": [[k, v] for k, v in first.model_overrides],
            "runs_dir": self.runs_dir, "results_dir": self.results_dir,
        }


def plan_sweep(
    model: str | None = None,
    variants: str | Sequence[str] | None = None,
    *,
    baselines: str | Sequence[str] | None = None,
    dataset: str = DEFAULT_DATASET,
    data_root: str | None = None,
    folds: str | Iterable[int] | int | None = None,
    seeds: str | Iterable[int] | int | None = None,
    epochs: int | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    overrides: Sequence[str] = (),
    runs_dir: str | os.PathLike = "runs",
    results_dir: str | os.PathLike = "results",
) -> SweepPlan:
    """Validate the sweep arguments and build its :class:`SweepPlan` (no training, no torch).

    Without ``data_root`` on ``dataset="synth"`` the model defaults to :data:`DEFAULT_MODEL` and
    fold :data:`DEFAULT_FOLDS` is swept; with a real dataset the model defaults to
    :data:`DEFAULT_REAL_MODEL` and every official fold is swept. Each cell's spec comes from
    :func:`ifdd_bench.spec.build_run_spec` (native geometry, protocol data recipe, embedded CPU
    recipe on SynthDFER); every cell is built here once, so a bad override fails before training.
    ``overrides`` are ``key=value`` strings routed to the train, data or model config
    (``epochs=3``, ``data.size=224``, ``model.drop_path=0.1``).
    """
    check_dataset(dataset, data_root)
    embedded = is_embedded(dataset, data_root)
    model = model or (DEFAULT_MODEL if embedded else DEFAULT_REAL_MODEL)
    registry.get_entry(model)  # unknown model -> clear error
    axes = {key.split(".")[-1] for key, _ in parse_overrides(overrides)}
    if "fold" in axes:
        raise ConfigError("set folds with --folds, not data.fold=")
    if "seed" in axes:
        raise ConfigError("set seeds with --seeds, not seed=")
    plan = SweepPlan(
        model=model, variants=resolve_variants(model, variants),
        folds=parse_folds(folds if folds is not None else (DEFAULT_FOLDS if embedded else None), dataset),
        seeds=parse_seeds(seeds), dataset=dataset, data_root=str(data_root) if data_root else None,
        protocol=protocol, epochs=epochs, overrides=tuple(overrides), baselines=resolve_baselines(baselines),
        runs_dir=str(runs_dir), results_dir=str(results_dir),
    )
    plan.cells()  # every variant must accept the overrides; refusals surface now
    return plan


def default_jobs(plan: SweepPlan, executor: str = "local") -> int:
    """Cells to run at once when ``--jobs`` is not given.

    The embedded SynthDFER sweep on the local executor runs :data:`DEFAULT_SYNTH_JOBS` cells at
    once (capped at the CPU count, one torch thread each); everything else one cell at a time.
    """
    if executor == "local" and is_embedded(plan.dataset, plan.data_root):
        return max(1, min(DEFAULT_SYNTH_JOBS, os.cpu_count() or 1))
    return 1


# --------------------------------------------------------------------------------------------
# finished cells


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _row_matches(row: Mapping[str, str], cell: Cell) -> bool:
    if row.get("run_id") != cell.run_id or row.get("train_hash") != cell.train_hash:
        return False
    for col, want in (("frames", cell.spec.data.frames), ("size", cell.spec.data.size)):
        have = row.get(col)
        if have not in (None, "") and str(have) != str(want):
            return False
    return True


def split_finished(cells: Sequence[Cell], results_dir: str | os.PathLike) -> tuple[list[Cell], list[Cell]]:
    """Return ``(todo, finished)``: a cell is finished when runs.csv has its run_id + train_hash."""
    rows = _read_rows(Path(results_dir) / RUNS_CSV)
    by_id: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_id.setdefault(row.get("run_id", ""), []).append(row)
    todo, done = [], []
    for cell in cells:
        (done if any(_row_matches(r, cell) for r in by_id.get(cell.run_id, [])) else todo).append(cell)
    return todo, done


def result_rows(plan: SweepPlan) -> list[dict[str, str]]:
    """The runs.csv rows that belong to the plan's cells (latest row per cell)."""
    cells = plan.cells()
    rows = _read_rows(Path(plan.results_dir) / RUNS_CSV)
    out = {}
    for row in rows:
        for cell in cells:
            if _row_matches(row, cell):
                out[cell.run_id] = row
    return [out[c.run_id] for c in cells if c.run_id in out]


# --------------------------------------------------------------------------------------------
# the job book (sweeps/<sweep_id>/jobs.csv)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class JobBook:
    """``jobs.csv`` of one sweep: one row per attempt of a cell, rewritten atomically under a lock."""

    def __init__(self, folder: Path, sweep_id: str):
        self.folder = folder
        self.path = folder / "jobs.csv"
        self.sweep_id = sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def rows(self) -> list[dict[str, str]]:
        """Every recorded attempt."""
        return _read_rows(self.path)

    def start(self, cell: Cell, executor: str, status: str = "running", **extra: Any) -> int:
        """Record a new attempt of ``cell``; returns its attempt number (1-based)."""
        with self._lock:
            rows = self.rows()
            attempt = 1 + sum(1 for r in rows if r["run_id"] == cell.run_id)
            spec = cell.spec
            rows.append({
                "sweep_id": self.sweep_id, "run_id": cell.run_id, "attempt": attempt, "role": cell.role,
                "model": spec.model, "variant": spec.variant, "dataset": spec.data.dataset,
                "fold": spec.data.fold, "seed": spec.train.seed, "train_hash": cell.train_hash,
                "executor": executor, "job_id": "", "status": status, "error": "",
                "started_at": _now(), "finished_at": "", "seconds": "", "log": "", **extra,
            })
            self._write(rows)
        return attempt

    def update(self, run_id: str, attempt: int, **fields_: Any) -> None:
        """Change fields of one attempt (status, job_id, error, finished_at ...)."""
        with self._lock:
            rows = self.rows()
            for row in rows:
                if row["run_id"] == run_id and int(row["attempt"]) == attempt:
                    row.update({k: v for k, v in fields_.items()})
            self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(JOB_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in JOB_COLUMNS})
        write_text_atomic(self.path, buf.getvalue(), newline="")  # newline="": keep csv's \r\n as written


# --------------------------------------------------------------------------------------------
# running cells


@dataclass
class CellFailure:
    """A cell that raised: its run id, attempt, the error line and where the full log is."""

    run_id: str
    error: str
    job_id: str = ""
    log: str = ""


@dataclass
class SweepOutcome:
    """What a call of :func:`run_sweep` did."""

    sweep_id: str
    folder: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[CellFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _error_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if "\n" in text and len(text) > 300 else text.replace("\n", " | ")


def check_init_weights(cells: Sequence[Cell]) -> None:
    """Build one model per model/overrides whose config names an initial-weight file, at the cells'
    input geometry, so that a file that does not fit (e.g. the 64 px pretext backbone under
    ``data.size=32``) fails once with its own error before any cell starts, not once per cell."""
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        spec = cell.spec
        key = (spec.model, spec.model_overrides, spec.data.frames, spec.data.size)
        if key in seen:
            continue
        seen.add(key)
        cfg = registry.resolve_config(spec.model, spec.variant, frames=spec.data.frames, img_size=spec.data.size,
                                      overrides=dict(spec.model_overrides))
        if any(getattr(cfg, name, None) for name in registry.INIT_FIELDS):
            registry.build_from_config(spec.model, cfg)


def run_sweep(
    plan: SweepPlan,
    *,
    executor: str = "local",
    jobs: int = 1,
    runner: Runner | None = None,
    progress: Progress | None = None,
    submitit_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> SweepOutcome:
    """Run the cells of ``plan`` that ``runs.csv`` lacks; return what was skipped/done/failed.

    ``runner(spec, progress=, resume=True)`` trains one cell (default: the engine's
    ``train_run``); it must append the cell's row to ``runs.csv``. A cell that raises is recorded
    as failed in ``jobs.csv`` and the sweep goes on; ``KeyboardInterrupt`` stops the sweep
    (finished cells stay finished). ``progress`` receives dicts: ``{"event": "sweep_start",
    "total", "todo"}``, ``{"event": "cell_start" | "cell_done" | "cell_failed", "run_id",
    "index", ...}`` and, for in-process cells, ``{"event": "run", "run_id", "data": <engine
    progress>}``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: unknown executor {executor!r}{suggest(executor, EXECUTORS)}; "
                          f"valid: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    cells = plan.cells()
    if not cells:
        raise ConfigError("the sweep grid is empty; check --variants, --folds and --seeds")
    folder = Path(plan.runs_dir) / "sweeps" / plan.sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "sweep.json", plan.describe())
    todo, finished = split_finished(cells, plan.results_dir)
    outcome = SweepOutcome(plan.sweep_id, folder, len(cells), skipped=[c.run_id for c in finished])
    emit = progress or (lambda event: None)
    emit({"event": "sweep_start", "sweep_id": plan.sweep_id, "total": len(cells), "todo": len(todo),
          "skipped": len(finished), "folder": str(folder)})
    if dry_run or not todo:
        return outcome
    check_init_weights(todo)
    book = JobBook(folder, plan.sweep_id)
    start = time.perf_counter()
    try:
        if executor == "submitit":
            _run_submitit(todo, book, outcome, runner, emit, jobs, dict(submitit_options or {}))
        elif jobs > 1:
            _run_pool(todo, book, outcome, runner, emit, jobs)
        else:
            _run_inline(todo, book, outcome, runner, emit)
    finally:
        outcome.seconds = time.perf_counter() - start
    return outcome


def _finish(book: JobBook, cell: Cell, attempt: int, t0: float, outcome: SweepOutcome, emit: Progress,
            index: int, err: BaseException | str | None = None, job_id: str = "", log_path: str = "",
            cell_seconds: float | None = None) -> None:
    """Record a finished cell. ``cell_seconds`` is the time the cell itself ran (measured in the
    worker); without it, the time since ``t0`` is used, which for pooled and submitit cells also
    counts the time spent waiting for a free worker or a cluster slot."""
    seconds = f"{cell_seconds if cell_seconds is not None else time.perf_counter() - t0:.1f}"
    if err is None:
        book.update(cell.run_id, attempt, status="done", finished_at=_now(), seconds=seconds)
        outcome.done.append(cell.run_id)
        emit({"event": "cell_done", "run_id": cell.run_id, "index": index, "seconds": float(seconds)})
        return
    line = err if isinstance(err, str) else _error_line(err)
    book.update(cell.run_id, attempt, status="failed", error=line, finished_at=_now(), seconds=seconds)
    outcome.failed.append(CellFailure(cell.run_id, line, job_id, log_path))
    emit({"event": "cell_failed", "run_id": cell.run_id, "index": index, "error": line})


def _check_row(cell: Cell, results_dir: str, returned: Mapping[str, Any] | None = None) -> str | None:
    """Error text if the cell's result row is still missing from runs.csv after the runner ran.

    The engine returns the stored row of a run folder that already finished without appending it
    again; when that row belongs to this cell (same train_hash) but ``results_dir`` lacks it (a
    new results folder), it is recorded here, with its per-class rows from ``result.json``.
    """
    todo, _ = split_finished([cell], results_dir)
    if not todo:
        return None
    row = dict((returned or {}).get("row", returned or {}))
    if row.get("run_id") == cell.run_id and row.get("train_hash") not in (None, cell.train_hash):
        return (f"{Path(cell.spec.runs_dir) / cell.run_id} holds a finished run of another protocol "
                f"(train_hash {row.get('train_hash')}, this sweep {cell.train_hash}); re-run with --restart "
                f"to retrain it, or use another --runs-dir")
    if row.get("run_id") == cell.run_id and row.get("train_hash") == cell.train_hash:
        per_class = []
        result_json = Path(cell.spec.runs_dir) / cell.run_id / "result.json"
        if result_json.is_file():
            try:
                per_class = json.loads(result_json.read_text()).get("per_class") or []
            except (OSError, ValueError):
                per_class = []
        append_rows(Path(results_dir) / RUNS_CSV, [row])
        if per_class:
            append_rows(Path(results_dir) / PER_CLASS_CSV, per_class)
        return None
    return (f"runner finished but {Path(results_dir) / RUNS_CSV} has no row for {cell.run_id} "
            f"with train_hash {cell.train_hash}")


def _run_inline(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
                emit: Progress) -> None:
    runner = runner or default_runner()
    for index, cell in enumerate(todo):
        attempt = book.start(cell, "local", job_id=f"pid{os.getpid()}",
                             log=str(Path(cell.spec.runs_dir) / cell.run_id))
        emit({"event": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo)})
        t0 = time.perf_counter()

        def inner(data: Any, _rid: str = cell.run_id) -> None:
            emit({"event": "run", "run_id": _rid, "data": data})

        try:
            returned = runner(cell.spec, progress=inner, resume=True)
        except KeyboardInterrupt:
            book.update(cell.run_id, attempt, status="interrupted", finished_at=_now())
            raise
        except Exception as err:  # a failed cell must not stop the sweep
            log.debug("cell %s failed", cell.run_id, exc_info=True)
            write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt", traceback.format_exc())
            _finish(book, cell, attempt, t0, outcome, emit, index, err)
            continue
        _finish(book, cell, attempt, t0, outcome, emit, index, _check_row(cell, cell.spec.results_dir, returned))


def _run_pool(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
              emit: Progress, jobs: int) -> None:
    pool = CellPool(jobs, len(todo))
    running: dict[cf.Future, tuple[int, Cell, int, float]] = {}
    try:
        for index, cell in enumerate(todo):
            attempt = book.start(cell, f"local-pool{jobs}", status="submitted",
                                 log=str(Path(cell.spec.runs_dir) / cell.run_id))
            running[pool.submit(cell.spec, runner)] = (index, cell, attempt, time.perf_counter())
            emit({"event": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo)})
        for future in pool.as_completed(list(running), emit):
            index, cell, attempt, t0 = running[future]
            err, seconds = future.exception(), None
            if err is None:
                returned, seconds = pop_cell_seconds(future.result())
                err = _check_row(cell, cell.spec.results_dir, returned)
            else:
                write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt",
                            "".join(traceback.format_exception(err)))
            _finish(book, cell, attempt, t0, outcome, emit, index, err, cell_seconds=seconds)
    except KeyboardInterrupt:
        pool.shutdown(wait=False)
        for future, (_, cell, attempt, _) in running.items():
            if not future.done():
                book.update(cell.run_id, attempt, status="interrupted", finished_at=_now())
        raise
    finally:
        pool.shutdown(wait=True)


def _run_submitit(todo: list[Cell], book: JobBook, outcome: SweepOutcome, runner: Runner | None,
                  emit: Progress, jobs: int, options: dict[str, Any]) -> None:
    """One submitit job per cell; at most ``jobs`` in flight when running local processes."""
    import submitit

    cluster = options.pop("cluster", None)
    sub_folder = outcome.folder / "submitit"
    ex = submitit.AutoExecutor(folder=str(sub_folder), cluster=cluster)
    local = ex.cluster in ("local", "debug")
    cpus = int(options.pop("cpus_per_task", max(1, (os.cpu_count() or 1) // jobs) if local else 4))
    params: dict[str, Any] = {"timeout_min": 24 * 60, "cpus_per_task": cpus, "name": "ifdd-bench"}
    params.update(options)
    ex.update_parameters(**params)
    threads = cpus
    window = jobs if local else max(jobs, len(todo))  # Slurm queues everything; local runs `jobs` at once
    queue = list(enumerate(todo))
    in_flight: dict[Any, tuple[int, Cell, int, float]] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                index, cell = queue.pop(0)
                job = ex.submit(run_cell, cell.spec, runner, threads)
                attempt = book.start(cell, f"submitit-{ex.cluster}", status="submitted", job_id=str(job.job_id),
                                     log=str(sub_folder))
                in_flight[job] = (index, cell, attempt, time.perf_counter())
                emit({"event": "cell_start", "run_id": cell.run_id, "index": index, "todo": len(todo),
                      "job_id": str(job.job_id)})
            finished = [j for j in in_flight if j.done()]
            if not finished:
                time.sleep(0.5)
                continue
            for job in finished:
                index, cell, attempt, t0 = in_flight.pop(job)
                err: BaseException | str | None
                seconds = None
                try:
                    returned, seconds = pop_cell_seconds(job.result())
                    err = _check_row(cell, cell.spec.results_dir, returned)
                except Exception as exc:  # submitit wraps the job's exception (FailedJobError ...)
                    err = _submitit_error(exc)
                    write_text_atomic(outcome.folder / "errors" / f"{cell.run_id}.{attempt}.txt", str(exc))
                _finish(book, cell, attempt, t0, outcome, emit, index, err, job_id=str(job.job_id),
                        log_path=str(job.paths.stderr), cell_seconds=seconds)
    except KeyboardInterrupt:
        for job, (_, cell, attempt, _) in in_flight.items():
            if local:
                job.cancel(check=False)
            book.update(cell.run_id, attempt, status="interrupted" if local else "detached", finished_at=_now())
        raise


def _submitit_error(exc: BaseException) -> str:
    """The remote exception line of a submitit job failure, else the failure's first line.

    A ``FailedJobError`` carries the job's traceback between two dashed rules; its last line is
    the exception raised in the cell (``RuntimeError: ...``).
    """
    text = str(exc)
    blocks = [b for b in text.split("----------------------") if b.strip()]
    for block in blocks:
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if lines and lines[0].startswith("Traceback"):
            return lines[-1][:500]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first}"[:500]


# --------------------------------------------------------------------------------------------
# summary


def summarize(plan: SweepPlan) -> list[dict[str, Any]]:
    """Mean and std (over folds x seeds) of test UAR/WAR per (model, variant), in plan order.

    Rows: ``{"model", "variant", "role", "n", "uar_mean", "uar_std", "war_mean", "war_std"}``
    with metrics as fractions; std is the sample std (0 for a single run).
    """
    import statistics

    rows = result_rows(plan)
    order = [(plan.model, v, "variant") for v in plan.variants] + [(m, v, "baseline") for m, v in plan.baselines]
    out = []
    for model, variant, role in order:
        mine = [r for r in rows if r["model"] == model and r["variant"] == variant]
        if not mine:
            continue
        uar = [float(r["uar"]) for r in mine]
        war = [float(r["war"]) for r in mine]
        out.append({
            "model": model, "variant": variant, "role": role, "n": len(mine),
            "uar_mean": statistics.fmean(uar), "uar_std": statistics.stdev(uar) if len(uar) > 1 else 0.0,
            "war_mean": statistics.fmean(war), "war_std": statistics.stdev(war) if len(war) > 1 else 0.0,
        })
    return out


# --------------------------------------------------------------------------------------------
# small file helpers


def _write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
