"""The one builder of a :class:`~ifdd_bench.config.RunSpec` from what a user asks.

``run train``, every ``run ablation`` cell (inline, pool, submitit) and ``eval`` on another
dataset call :func:`build_run_spec`, so the same request gives the same run on every path. It applies, in this order:

1. the protocol preset (``reference`` or ``unified``);
2. on the embedded SynthDFER benchmark (``dataset="synth"`` without a data root), the CPU recipe
   :data:`EMBEDDED_TRAIN` / :data:`EMBEDDED_DATA`;
3. the model's native clip geometry (``frames`` x ``img_size``) and, under ``reference``, IFDD's
   data recipe for the dataset (:func:`data_defaults`);
4. ``epochs`` (the warm-up is clamped to ``epochs - 1`` unless set explicitly), ``seed``, ``device``;
5. the user's ``key=value`` overrides, routed to the train, data or model config; setting
   ``data.frames`` keeps ``U * V == T``; model keys that follow the data are refused.

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
from dataclasses import replace
from typing import Any, Mapping, Sequence

from ifdd_bench import registry
from ifdd_bench.config import (DATASETS, DataConfig, RunSpec, apply_overrides, parse_overrides, protocol_preset,
                               route_overrides)
from ifdd_bench.errors import ConfigError, unknown

#: TrainConfig values of the embedded SynthDFER benchmark on a CPU (over the protocol preset): no
#: warm-up, label smoothing or weight decay, which kept ifdd_tiny at chance for longer than the
#: 15-minute budget of the default ablation (docs/notebook/default-ablation.md)
EMBEDDED_TRAIN: Mapping[str, Any] = {"epochs": 5, "warmup_epochs": 0, "batch_size": 16,
                                     "label_smoothing": 0.0, "weight_decay": 0.0}
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


def option_overrides(*, precision: str | None = None, compile: bool = False) -> list[str]:
    """The ``key=value`` overrides of ``run train`` / ``run ablation``'s ``--precision`` and
    ``--compile`` options (nothing for an option left unset), placed before the user's ``--set``
    items so that an explicit ``--set`` wins."""
    items = [f"precision={precision}"] if precision else []
    return items + (["compile=true"] if compile else [])


def build_run_spec(
    model: str,
    variant: str | None = None,
    *,
    dataset: str = "synth",
    data_root: str | os.PathLike | None = None,
    fold: int = 1,
    seed: int = 0,
    protocol: str = "unified",
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    runs_dir: str | os.PathLike = "runs",
    results_dir: str | os.PathLike = "results",
) -> RunSpec:
    """The :class:`RunSpec` that is trained for this request (see the module docstring for the
    order in which presets, geometry, recipe and overrides apply).

    ``overrides`` are ``key=value`` strings (``lr=1e-3``, ``data.size=96``, ``model.drop_path=0.1``;
    an unscoped key goes to the one config that has it). Unknown models, variants, keys and
    values raise :class:`ConfigError` naming them.
    """
    check_dataset(dataset, data_root)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    root = os.path.abspath(os.fspath(data_root)) if data_root else None
    embedded = is_embedded(dataset, data_root)
    train = protocol_preset(protocol, **(dict(EMBEDDED_TRAIN) if embedded else {}))
    model_cfg = registry.resolve_config(model, variant)  # unknown model / variant -> lists the valid ones
    data = DataConfig(dataset=dataset, data_root=root, fold=fold, **data_defaults(model_cfg, dataset, protocol),
                      **(dict(EMBEDDED_DATA) if embedded else {}))
    train = replace(train, seed=seed, **({"device": device} if device else {}))

    items = _refuse_data_driven(overrides)
    routed = route_overrides(items, {"train": train, "data": data, "model": model_cfg})
    set_train = {item.split("=", 1)[0] for item in routed["train"]}
    set_data = {item.split("=", 1)[0] for item in routed["data"]}
    if epochs is not None:
        train = replace(train, epochs=epochs)
    train = apply_overrides(train, routed["train"], what="train config")
    if (epochs is not None or "epochs" in set_train) and "warmup_epochs" not in set_train:
        train = replace(train, warmup_epochs=min(train.warmup_epochs, max(train.epochs - 1, 0)))
    data = apply_overrides(data, routed["data"], what="data config")
    if "frames" in set_data and "segments" not in set_data and data.segment_len and data.frames % data.segment_len == 0:
        data = replace(data, segments=data.frames // data.segment_len)  # keep U * V == T
    pairs: tuple[tuple[str, Any], ...] = ()
    if routed["model"]:
        typed = apply_overrides(model_cfg, routed["model"], what=f"{model} config")
        keys = dict.fromkeys(item.split("=", 1)[0] for item in routed["model"])
        pairs = tuple((k, getattr(typed, k)) for k in keys)
    return RunSpec(model, variant=variant or "full", data=data, train=train, model_overrides=pairs,
                   runs_dir=os.fspath(runs_dir), results_dir=os.fspath(results_dir))


def shared_overrides(overrides: Sequence[str], model: str, variant: str | None = None) -> list[str]:
    """The train and data overrides of ``overrides`` (routed as for ``model``), written with their
    scope (``train.lr=1e-3``, ``data.size=96``): what a sweep's baseline cells share with the
    ablated model, whose model-config overrides they do not know."""
    model_cfg = registry.resolve_config(model, variant)
    routed = route_overrides(_refuse_data_driven(overrides),
                             {"train": protocol_preset("unified"), "data": DataConfig(), "model": model_cfg})
    return [f"{scope}.{item}" for scope in ("train", "data") for item in routed[scope]]
