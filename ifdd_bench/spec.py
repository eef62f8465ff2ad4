"""The one builder of a :class:`~ifdd_bench.config.RunSpec` from what a user asks.

``run train``, every ``run ablation`` cell (inline, pool, submitit) and ``eval`` on another
dataset call :func:`build_run_spec`, so the same request gives the same run on every path. It applies, in this order:

1. the protocol preset (``reference`` or ``unified``);
2. on the embedded SynthDFER benchmark (``dataset="synth"`` without a data root), the CPU recipe
   :data:`EMBEDDED_TRAIN` / :data:`EMBEDDED_DATA`;
3. the model's native clip geometry (``frames`` x ``img_size``) and, under ``reference``, IFDD's
   data recipe for the dataset (:func:`data_defaults`);
4. ``seed``, ``device``;
5. a recipe's ``set:`` entries and top-level ``epochs`` (``--config``, :mod:`ifdd_bench.recipe`);
6. ``epochs`` (the warm-up is clamped to ``epochs - 1`` unless a later layer sets it), then the
   user's ``key=value`` overrides, routed to the train, data or model config; setting
   ``data.frames`` keeps ``U * V == T``; model keys that follow the data are refused.

A recipe also gives the values of the request's options (model, dataset, fold, ...) left as None;
options given win.

No torch import: building a spec is instant and works in the CLI's help and the report.

Example::

    >>> spec = build_run_spec("ifdd_tiny", "no_issm", seed=1, epochs=2)
    >>> spec.run_id.startswith("ifdd_tiny-no_issm-synth-f1-s1-unified-")
    True
    >>> (spec.data.frames, spec.data.size, spec.train.warmup_epochs)
    (16, 64, 0)
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from typing import Any, Mapping, Sequence

from ifdd_bench import registry
from ifdd_bench.config import (DATASETS, DataConfig, RunSpec, apply_overrides, parse_loggers, parse_overrides,
                               protocol_preset, route_overrides)
from ifdd_bench.errors import ConfigError, unknown
from ifdd_bench.recipe import RUN_KEYS, SWEEP_KEYS, Recipe, check_derived, load_recipe

#: TrainConfig values of the embedded SynthDFER benchmark on a CPU (over the protocol preset), for
#: the frozen-backbone default model (ifdd_tiny_frozen): 15 epochs at peak lr 1e-3 with no warm-up
#: or label smoothing, the tops' features kept in memory after the first epoch (feature_cache_mb), so
#: 7 variants and the static control fit the 15-minute budget of the default ablation
#: (docs/notebook/default-ablation.md#2026-12-06-five-seeds-of-the-frozen-backbone-at-15-epochs)
EMBEDDED_TRAIN: Mapping[str, Any] = {"epochs": 15, "lr": 1e-3, "warmup_epochs": 0, "batch_size": 16,
                                     "label_smoothing": 0.0, "feature_cache_mb": 512}
#: DataConfig values of the embedded benchmark: decoded clips kept in memory (1,500 clips x 16 x
#: 64 x 64 x 3 bytes = 295 MB at the tiny geometry), so JPEG decoding is paid once per run; no
#: crop/flip augmentation (SynthDFER already varies pose, zoom, shake and lighting per clip)
EMBEDDED_DATA: Mapping[str, Any] = {"cache_clips": True, "train_aug": "none"}

#: model config fields the data decides; users change them through the data config instead
DATA_DRIVEN_MODEL_KEYS: Mapping[str, str] = {"num_classes": "the dataset's classes", "frames": "data.frames",
                                              "img_size": "data.size"}


def is_embedded(dataset: str, data_root: str | os.PathLike | None) -> bool:
    """True for the embedded SynthDFER benchmark (``synth`` without a dataset folder)."""
    return dataset == "synth" and not data_root


def data_defaults(model_cfg: Any, dataset: str, protocol: str) -> dict[str, Any]:
    """DataConfig values a run starts from before the user's overrides.

    * geometry: the model's native ``frames`` and ``img_size`` (IFDD paper 16x224, baselines
      16x112, ``*_tiny`` 16x64), as the unified protocol prescribes per model;
    * ``reference`` protocol: IFDD's data recipe (spec 11.3/11.4): consecutive frames (MAFW: 32
      frames with stride 2), the reference augmentation, and for FERV39k/MAFW the random evaluation
      window the reference uses.
    """
    frames = int(model_cfg.frames)
    values: dict[str, Any] = {"frames": frames, "segments": frames, "segment_len": 1, "size": int(model_cfg.img_size)}
    if protocol == "reference":
        values.update(sampling="consecutive", train_aug="reference", frame_stride=1, eval_views=1,
                      eval_sampling="random" if dataset in ("ferv39k", "mafw") else "center")
        if dataset == "mafw":
            values.update(frames=32, segments=32, frame_stride=2)
    return values


def check_dataset(dataset: str, data_root: str | os.PathLike | None) -> None:
    """Refuse an unknown dataset name, or a real dataset without its folder."""
    if dataset not in DATASETS:
        raise unknown("dataset", dataset, DATASETS)
    if dataset != "synth" and not data_root:
        raise ConfigError(f"--dataset {dataset} needs --data-root pointing at the dataset folder as shipped",
                          hint="only the embedded SynthDFER benchmark (--dataset synth) works without a folder")


def _refuse_data_driven(overrides: Sequence[str]) -> list[str]:
    """Refuse model keys that follow the data; an unscoped ``frames=`` means ``data.frames=``."""
    items = []
    for key, value in parse_overrides(overrides):
        bare = key[len("model."):] if key.startswith("model.") else key
        if (key.startswith("model.") and bare in DATA_DRIVEN_MODEL_KEYS) or key in ("img_size", "num_classes"):
            raise ConfigError(f"--set {key}: the model's {bare} follows the data; set "
                              f"{DATA_DRIVEN_MODEL_KEYS[bare]} instead")
        items.append(f"data.{key}={value}" if key == "frames" else f"{key}={value}")
    return items


#: request values when neither the command line nor a recipe gives them
REQUEST_DEFAULTS: Mapping[str, Any] = {"dataset": "synth", "fold": 1, "seed": 0, "protocol": "unified",
                                       "runs_dir": "runs", "results_dir": "results"}


def request_values(recipe: Recipe | None = None, *, require_model: bool = True, **given: Any) -> dict[str, Any]:
    """The request's top-level values: each option given (not None) wins over the recipe's value,
    which wins over :data:`REQUEST_DEFAULTS`. The model is the recipe's unless the recipe names none;
    a different ``model`` is refused (:meth:`Recipe.check_model`); no model at all is refused when
    ``require_model``."""
    values: dict[str, Any] = dict(REQUEST_DEFAULTS)
    if recipe is not None:
        values.update({k: v for k, v in recipe.values.items() if k in RUN_KEYS})
        given["model"] = recipe.check_model(given.get("model"))
    values.update({k: v for k, v in given.items() if v is not None})
    if require_model and not values.get("model"):
        raise ConfigError("no model given: pass --model NAME (see `ifdd-bench models`) or a recipe with a model: line")
    return values


def _scopes(train: Any, data: Any, model_cfg: Any) -> dict[str, Any]:
    return {"train": train, "data": data, "model": model_cfg}


def _check_recipe_items(recipe: Recipe, model: str, scopes: Mapping[str, Any]) -> None:
    """Each ``set:`` entry of the recipe on its own through the routing and typing of a ``--set``
    item, so a refusal names the recipe's file and line (and, for a model key, the model)."""
    family = registry.get_entry(model).family
    for item, line in recipe.overrides:
        try:
            routed = route_overrides(_refuse_data_driven([item]), scopes)
            for scope, cfg in scopes.items():
                apply_overrides(cfg, routed[scope], what=f"{model} config" if scope == "model" else f"{scope} config")
        except ConfigError as err:
            key = item.split("=", 1)[0]
            foreign = key.startswith("model.") and key[len("model."):] not in {f.name for f in fields(scopes["model"])}
            hint = (f"this recipe's model keys do not apply to {model} (family {family or model}); use a recipe "
                    "written for it, or remove the key" if foreign else err.hint)
            raise ConfigError(f"{recipe.where(line=line)}: {err.message}", hint=hint) from None


def _last(layers: Sequence[set[str]], key: str) -> int:
    """Index of the last layer that sets ``key`` (-1: none)."""
    return max((i for i, keys in enumerate(layers) if key in keys), default=-1)


def option_overrides(*, precision: str | None = None, compile: bool = False) -> list[str]:
    """The ``key=value`` overrides of ``run train`` / ``run ablation``'s ``--precision`` and
    ``--compile`` options (nothing for an option left unset), placed before the user's ``--set``
    items so that an explicit ``--set`` wins."""
    items = [f"precision={precision}"] if precision else []
    return items + (["compile=true"] if compile else [])


def build_run_spec(
    model: str | None = None,
    variant: str | None = None,
    *,
    dataset: str | None = None,
    data_root: str | os.PathLike | None = None,
    fold: int | None = None,
    seed: int | None = None,
    protocol: str | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    runs_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    recipe: Recipe | None = None,
    loggers: str | Sequence[str] = (),
) -> RunSpec:
    """The :class:`RunSpec` that is trained for this request (see the module docstring for the
    order in which presets, geometry, recipe and overrides apply).

    ``overrides`` are ``key=value`` strings (``lr=1e-3``, ``data.size=96``, ``model.drop_path=0.1``;
    an unscoped key goes to the one config that has it). A ``recipe`` (:mod:`ifdd_bench.recipe`)
    gives the values of the options left as None and ``set:`` entries applied before ``epochs`` and
    ``overrides``, which win; when a later layer sets ``epochs`` (``data.frames``) but not
    ``warmup_epochs`` (``data.segments``), the warm-up is clamped (``U * V == T`` kept) as without a
    recipe. Unknown models, variants, keys and values raise :class:`ConfigError` naming them (and
    the recipe's file and line). ``loggers`` names the loggers beside the CSV files
    (``"tensorboard"``, ``"wandb"`` or a comma list; not part of the run id); an unknown logger or
    one whose package is missing raises :class:`ConfigError` too.
    """
    log_to = parse_loggers(loggers)
    req = request_values(recipe, model=model, variant=variant, dataset=dataset, data_root=data_root, fold=fold,
                         seed=seed, protocol=protocol, epochs=epochs, device=device, runs_dir=runs_dir,
                         results_dir=results_dir)
    # ``epochs`` stays the command line's: the recipe's top-level epochs is applied in the recipe's layer
    model, variant, dataset, data_root = req["model"], req.get("variant"), req["dataset"], req.get("data_root")
    protocol, device = req["protocol"], req.get("device")
    try:
        check_dataset(dataset, data_root)
    except ConfigError as err:
        if recipe is None or dataset != recipe.get("dataset"):
            raise
        if dataset not in DATASETS:  # a misspelled name in the recipe: say where, not "add --data-root"
            raise ConfigError(f"{recipe.where('dataset')}: {err.message}", hint=err.hint) from None
        if data_root:
            raise
        raise ConfigError(f"{recipe.where('dataset')}: the recipe is for dataset {dataset}, which needs --data-root "
                          "pointing at the dataset folder as shipped", hint=err.hint) from None
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    root = os.path.abspath(os.fspath(data_root)) if data_root else None
    embedded = is_embedded(dataset, data_root)
    train = protocol_preset(protocol, **(dict(EMBEDDED_TRAIN) if embedded else {}))
    model_cfg = registry.resolve_config(model, variant)  # unknown model / variant -> lists the valid ones
    data = DataConfig(dataset=dataset, data_root=root, fold=req["fold"],
                      **data_defaults(model_cfg, dataset, protocol), **(dict(EMBEDDED_DATA) if embedded else {}))
    train = replace(train, seed=req["seed"], **({"device": device} if device else {}))

    base: list[str] = []  # the recipe's layer: its set: entries, then its top-level epochs
    if recipe is not None:
        _check_recipe_items(recipe, model, _scopes(train, data, model_cfg))
        base = recipe.items + ([f"epochs={recipe.get('epochs')}"] if recipe.get("epochs") is not None else [])
        if recipe.get("epochs") is not None and recipe.get("epochs") < 1:
            raise ConfigError(f"{recipe.where('epochs')}: epochs must be >= 1, got {recipe.get('epochs')}")
    scopes = _scopes(train, data, model_cfg)
    layers = [route_overrides(_refuse_data_driven(base), scopes), route_overrides(_refuse_data_driven(overrides), scopes)]
    keys = {scope: [{item.split("=", 1)[0] for item in layer[scope]} for layer in layers] for scope in scopes}
    # train: recipe layer, then --epochs, then --set (positions 0, 1, 2 for the warm-up clamp)
    train_layers = [keys["train"][0], {"epochs"} if epochs is not None else set(), keys["train"][1]]
    train = apply_overrides(train, layers[0]["train"], what="train config")
    if epochs is not None:
        train = replace(train, epochs=epochs)
    train = apply_overrides(train, layers[1]["train"], what="train config")
    if _last(train_layers, "epochs") > _last(train_layers, "warmup_epochs"):
        train = replace(train, warmup_epochs=min(train.warmup_epochs, max(train.epochs - 1, 0)))
    for layer in layers:
        data = apply_overrides(data, layer["data"], what="data config")
    if (_last(keys["data"], "frames") > _last(keys["data"], "segments") and data.segment_len
            and data.frames % data.segment_len == 0):
        data = replace(data, segments=data.frames // data.segment_len)  # keep U * V == T
    pairs: tuple[tuple[str, Any], ...] = ()
    model_items = layers[0]["model"] + layers[1]["model"]
    if model_items:
        typed = apply_overrides(model_cfg, model_items, what=f"{model} config")
        names = dict.fromkeys(item.split("=", 1)[0] for item in model_items)
        pairs = tuple((k, getattr(typed, k)) for k in names)
    spec = RunSpec(model, variant=variant or "full", data=data, train=train, model_overrides=pairs,
                   runs_dir=os.fspath(req["runs_dir"]), results_dir=os.fspath(req["results_dir"]),
                   loggers=log_to)
    if recipe is not None:
        check_derived(recipe, spec)
    return spec


def run_spec(config: str | os.PathLike | None = None, **options: Any) -> RunSpec:
    """The spec of ``run train`` / ``config show``: :func:`build_run_spec` of the options (None: not
    given) over the recipe ``config`` (a YAML file or a shipped recipe's name, see
    :func:`ifdd_bench.recipe.load_recipe`). A recipe's sweep keys (``folds``, ``seeds`` ...) are refused."""
    recipe = load_recipe(config) if config is not None else None
    if recipe is not None:
        recipe.refuse(list(SWEEP_KEYS), "run train",
                      hint="folds, seeds, variants and baselines are run ablation's; run train takes fold, seed, variant")
    return build_run_spec(recipe=recipe, **options)


def shared_overrides(overrides: Sequence[str], model: str, variant: str | None = None) -> list[str]:
    """The train and data overrides of ``overrides`` (routed as for ``model``), written with their
    scope (``train.lr=1e-3``, ``data.size=96``): what a sweep's baseline cells share with the
    ablated model, whose model-config overrides they do not know."""
    model_cfg = registry.resolve_config(model, variant)
    routed = route_overrides(_refuse_data_driven(overrides),
                             {"train": protocol_preset("unified"), "data": DataConfig(), "model": model_cfg})
    return [f"{scope}.{item}" for scope in ("train", "data") for item in routed[scope]]
