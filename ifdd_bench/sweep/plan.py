"""The grid of an ablation sweep: its defaults, the axis parsers and :func:`plan_sweep`.

A sweep is the product ``variants x folds x seeds`` of one model (plus optional baseline models
trained under the same protocol). Each product element is a :class:`Cell`, i.e. one
:class:`~ifdd_bench.config.RunSpec` built by :func:`ifdd_bench.spec.build_run_spec`. Planning
validates every argument and builds every cell's spec; it trains nothing and imports no torch.

Example::

    >>> plan = plan_sweep(variants="full,no_issm", folds="1", seeds="0", epochs=1)
    >>> [c.run_id for c in plan.cells()][:1]
    ['ifdd_tiny_frozen-full-synth-f1-s0-unified-c9d570d2']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from ifdd_bench import registry
from ifdd_bench.config import (APEX_PERTURBATIONS, PERTURBATIONS, PROBE_MIN_FRAMES, DataConfig, RunSpec, TrainConfig,
                               parse_loggers, parse_overrides, parse_perturbations, to_dict, train_hash)
from ifdd_bench.cpus import usable_cpus
from ifdd_bench.data.labels import NUM_FOLDS
from ifdd_bench.errors import ConfigError, suggest
from ifdd_bench.hashing import json_hash
from ifdd_bench.recipe import Recipe
from ifdd_bench.spec import (REQUEST_DEFAULTS, build_run_spec, check_dataset, is_embedded, request_values,
                             shared_overrides)


# --------------------------------------------------------------------------------------------
# defaults of ``ifdd-bench run ablation`` with no arguments
#
# The no-argument sweep must finish in <= 15 minutes on the 2-core CPU machine the toolkit is
# developed on and still separate the IFDD variants measurably on the embedded SynthDFER preset.
# These numbers are tuned together with SynthDFER's difficulty; change them here (and in
# docs/sweeps.md#defaults, which quotes them), nowhere else.

#: model of the default ablation: CPU-sized IFDD on the shipped masked-video backbone, kept frozen, so
#: every row trains the parts IFDD adds on the same label-neutral features (fine-tuned within the
#: budget, ifdd_tiny_pretext's rows all stayed near chance: docs/notebook/default-ablation.md)
DEFAULT_MODEL = "ifdd_tiny_frozen"
#: model used when ``--data-root`` points at a real dataset (paper geometry, GPU-sized)
DEFAULT_REAL_MODEL = "ifdd"
#: the IFDD ablation rows (spec 10.2) in table order, plus the GAP control
DEFAULT_VARIANTS = ("baseline", "no_ladm", "no_issm_no_lift", "no_issm", "no_lift", "full", "gap")
#: control trained beside the default ablation (embedded benchmark, default model, ``--baselines``
#: not given): a frame classifier that cannot use dynamics, the floor the temporal rows must clear
DEFAULT_SYNTH_BASELINES = ("static_control",)
#: dataset and protocol: the ones every run request starts from (ifdd_bench.spec.REQUEST_DEFAULTS)
DEFAULT_DATASET = REQUEST_DEFAULTS["dataset"]
DEFAULT_PROTOCOL = REQUEST_DEFAULTS["protocol"]
#: folds / seeds of the embedded CPU sweep (real datasets default to every official fold)
DEFAULT_FOLDS = (1,)
DEFAULT_SEEDS = (0,)
#: the embedded benchmark's train/data recipe lives in ifdd_bench.spec (EMBEDDED_TRAIN, EMBEDDED_DATA),
#: so ``run train`` and every sweep cell get the same one
#: cells run at once for the embedded CPU sweep: one torch thread each beats two threads per cell
#: for op-overhead-bound tiny models (real datasets default to one cell at a time)
DEFAULT_SYNTH_JOBS = 2
# Budget behind these numbers (one torch thread per cell for the whole cell, torch 2.14, 2-core
# AVX2-only EPYC): the frozen default (ifdd_tiny_frozen, 15 epochs, features memoised) trains an
# IFDD cell with its probes in 99-131 s and the static control in 443 s; the 8 cells, two at a time,
# took 11 min 28 s on a fresh clone with SynthDFER generated first (docs/notebook/default-ablation.md,
# "seeds 5-9 of the default"). Re-measure when SynthDFER, the tiny geometry, the recipe or the grid
# change.


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
    if any(s < 0 or s >= 2 ** 63 for s in seeds):
        raise ConfigError(f"--seeds must be in 0..2^63-1 (torch's seed range), got {', '.join(map(str, seeds))}")
    return seeds


def has_apex(dataset: str, data_root: str | os.PathLike | None) -> bool:
    """Whether every clip's apex frame is known: SynthDFER (embedded, or a folder with its clips.csv)."""
    if dataset != "synth":
        return False
    if data_root is None:
        return True
    from ifdd_bench.data.synth.truth import META_FILE, TRUTH_FILE

    root = Path(data_root)
    return (root / META_FILE).is_file() and (root / TRUTH_FILE).is_file()


def resolve_probes(probes: bool, perturb: str | Sequence[str] | None, dataset: str,
                   data_root: str | os.PathLike | None) -> tuple[str, ...]:
    """The perturbations each cell is probed with after it trains (:mod:`ifdd_bench.engine.probes`).

    ``probes=False`` -> none. ``perturb=None`` -> every perturbation the dataset supports
    (:data:`~ifdd_bench.config.PERTURBATIONS`, freeze-apex only where :func:`has_apex`); a list
    asking for freeze-apex on a dataset without apex knowledge raises :class:`ConfigError`.
    """
    if not probes:
        if perturb is not None:
            raise ConfigError("--perturb chooses the probes' perturbations, and --no-probes turns the probes off",
                              hint="drop one of the two")
        return ()
    apex = has_apex(dataset, data_root)
    if perturb is None:
        return tuple(p for p in PERTURBATIONS if apex or p not in APEX_PERTURBATIONS)
    names = parse_perturbations(perturb)
    if not apex and any(p in APEX_PERTURBATIONS for p in names):
        others = ",".join(p for p in names if p not in APEX_PERTURBATIONS) or "shuffle"
        raise ConfigError(f"--perturb freeze-apex needs the apex frame of every clip, which only SynthDFER records "
                          f"(its clips.csv); {dataset}{f' at {data_root}' if data_root else ''} has none",
                          hint=f"leave freeze-apex out (--perturb {others})")
    return names


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
    """Parse ``"former_dfer_tiny,r3d_18:full"`` into ``(model, variant)`` pairs (variant ``full``);
    ``"none"`` is the empty selection."""
    if isinstance(text, str) and text.strip().lower() == "none":
        return ()
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
    #: temporal-reliance probes run on each cell's test split after it trains (() = none); they
    #: change no trained run, so they are not part of :attr:`sweep_id`
    probes: tuple[str, ...] = ()
    recipe: Recipe | None = field(default=None, compare=False)  # --config: its set: entries and epochs
    loggers: tuple[str, ...] = ()  # every cell's loggers beside the CSVs (not part of the sweep id)

    def spec(self, model: str, variant: str, fold: int, seed: int, role: str = "variant") -> RunSpec:
        """The spec of one cell; baseline cells take the train and data overrides (and the recipe's) only."""
        overrides, recipe = self.overrides, self.recipe
        if role != "variant":
            overrides = shared_overrides(self.overrides, self.model, self.variants[0])
            if recipe is not None:
                recipe = recipe.without_model(shared_overrides(recipe.items, self.model, self.variants[0]))
        return build_run_spec(model, variant, dataset=self.dataset, data_root=self.data_root, fold=fold, seed=seed,
                              protocol=self.protocol, epochs=self.epochs, overrides=overrides,
                              runs_dir=self.runs_dir, results_dir=self.results_dir, recipe=recipe,
                              loggers=self.loggers)

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
        desc.pop("runs_dir"), desc.pop("results_dir"), desc.pop("probes")
        return f"{self.model}-{self.dataset}-{json_hash(desc)}"

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
            "runs_dir": self.runs_dir, "results_dir": self.results_dir, "probes": list(self.probes),
        }


def plan_sweep(
    model: str | None = None,
    variants: str | Sequence[str] | None = None,
    *,
    baselines: str | Sequence[str] | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    folds: str | Iterable[int] | int | None = None,
    seeds: str | Iterable[int] | int | None = None,
    epochs: int | None = None,
    protocol: str | None = None,
    overrides: Sequence[str] = (),
    runs_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    recipe: Recipe | None = None,
    probes: bool = True,
    perturb: str | Sequence[str] | None = None,
    loggers: str | Sequence[str] = (),
) -> SweepPlan:
    """Validate the sweep arguments and build its :class:`SweepPlan` (no training, no torch).

    Without ``data_root`` on ``dataset="synth"`` the model defaults to :data:`DEFAULT_MODEL` and
    fold :data:`DEFAULT_FOLDS` is swept; with a real dataset the model defaults to
    :data:`DEFAULT_REAL_MODEL` and every official fold is swept. Each cell's spec comes from
    :func:`ifdd_bench.spec.build_run_spec` (native geometry, protocol data recipe, embedded CPU
    recipe on SynthDFER); every cell is built here once, so a bad override fails before training.
    ``overrides`` are ``key=value`` strings routed to the train, data or model config
    (``epochs=3``, ``data.eval_views=2``, ``model.drop_path=0.1``). A ``recipe`` (``--config``)
    gives every argument left as None, its ``variants``/``folds``/``seeds``/``baselines`` (or a single
    ``variant``/``fold``/``seed``) included; arguments given win. With ``probes`` (the default)
    every cell that has a checkpoint is probed after it trains with ``perturb`` (default: every
    perturbation the dataset supports; :func:`resolve_probes`). The default ablation (embedded
    benchmark, default model, no baselines asked for) trains :data:`DEFAULT_SYNTH_BASELINES` too.
    ``loggers`` (``tensorboard``, ``wandb``) go to every cell's run folder; a missing logger package
    fails here.
    """
    sweep_keys: dict[str, Any] = {}
    given = {"variants": variants, "folds": folds, "seeds": seeds, "baselines": baselines}
    blame: dict[str, str | None] = dict.fromkeys(given)  # axis -> "FILE, line N: key" of the recipe that gave it
    if recipe is not None:
        sweep_keys = {key: recipe.get(key) for key in ("variants", "folds", "seeds", "baselines")}
        blame = {key: f"{recipe.where(key)}: {key}" if given[key] is None and sweep_keys[key] is not None else None
                 for key in given}
        for single, plural in (("variant", "variants"), ("fold", "folds"), ("seed", "seeds")):
            if recipe.get(single) is not None:
                if sweep_keys[plural] is not None:
                    raise ConfigError(f"{recipe.where(single)}: give {single} or {plural}, not both")
                sweep_keys[plural] = [recipe.get(single)]
                blame[plural] = f"{recipe.where(single)}: {single}" if given[plural] is None else None
        sweep_keys = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in sweep_keys.items()}
        recipe = replace(recipe, derived={k: v for k, v in recipe.derived.items() if k != "run_id"})
    req = request_values(recipe, require_model=False, model=model, dataset=dataset, data_root=data_root, protocol=protocol,
                         runs_dir=runs_dir, results_dir=results_dir)
    dataset, data_root, protocol = req["dataset"], req.get("data_root"), req["protocol"]
    variants = variants if variants is not None else sweep_keys.get("variants")
    folds = folds if folds is not None else sweep_keys.get("folds")
    seeds = seeds if seeds is not None else sweep_keys.get("seeds")
    baselines = baselines if baselines is not None else sweep_keys.get("baselines")
    check_dataset(dataset, data_root)
    embedded = is_embedded(dataset, data_root)
    model = req.get("model") or (DEFAULT_MODEL if embedded else DEFAULT_REAL_MODEL)
    if baselines is None and embedded and model == DEFAULT_MODEL:
        baselines = DEFAULT_SYNTH_BASELINES
    registry.get_entry(model)  # unknown model -> clear error
    axes = {key.split(".")[-1] for key, _ in parse_overrides([*overrides, *(recipe.items if recipe else [])])}
    if "fold" in axes:
        raise ConfigError("set folds with --folds (a recipe: folds:), not data.fold=")
    if "seed" in axes:
        raise ConfigError("set seeds with --seeds (a recipe: seeds:), not seed=")
    plan = SweepPlan(
        model=model, variants=_blamed(blame["variants"], "--variants", resolve_variants, model, variants),
        folds=_blamed(blame["folds"], "--folds", parse_folds,
                      folds if folds is not None else (DEFAULT_FOLDS if embedded else None), dataset),
        seeds=_blamed(blame["seeds"], "--seeds", parse_seeds, seeds), dataset=dataset,
        data_root=str(data_root) if data_root else None, protocol=protocol, epochs=epochs, overrides=tuple(overrides),
        baselines=_blamed(blame["baselines"], "--baselines", resolve_baselines, baselines),
        runs_dir=str(req["runs_dir"]), results_dir=str(req["results_dir"]), recipe=recipe,
        probes=resolve_probes(probes, perturb, dataset, data_root),
        loggers=parse_loggers(loggers),
    )
    cells = plan.cells()  # every variant must accept the overrides; refusals surface now
    short = sorted({c.spec.data.frames for c in cells if c.spec.data.frames < PROBE_MIN_FRAMES})
    if plan.probes and short:
        raise ConfigError(f"the probes reorder frames, and these cells read {short[0]} frame(s) per clip; they need "
                          f"at least {PROBE_MIN_FRAMES}", hint="add --no-probes, or train with more frames")
    return plan


def _blamed(source: str | None, option: str, parse: Any, *args: Any) -> Any:
    """``parse(*args)``; when a recipe gave the value (``source``: its ``"FILE, line N: key"``), a
    refusal names that line and key instead of the command-line ``option``."""
    try:
        return parse(*args)
    except ConfigError as err:
        if source is None:
            raise
        message = err.message.removeprefix(f"{option}:").removeprefix(option).strip()
        raise ConfigError(f"{source}: {message}", hint=err.hint) from None


def default_jobs(plan: SweepPlan, executor: str = "local") -> int:
    """Cells to run at once when ``--jobs`` is not given.

    The embedded SynthDFER sweep on the local executor runs :data:`DEFAULT_SYNTH_JOBS` cells at
    once (capped at the CPU count, one torch thread each); everything else one cell at a time.
    """
    if executor == "local" and is_embedded(plan.dataset, plan.data_root):
        return max(1, min(DEFAULT_SYNTH_JOBS, usable_cpus()))
    return 1

