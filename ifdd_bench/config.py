"""Frozen configuration dataclasses shared by every model, plus typed ``key=value`` overrides.

No torch import here: reports and the CLI's help must stay fast.

Three configs describe a run:

* :class:`DataConfig`  - which clips, how they are sampled and augmented.
* :class:`TrainConfig` - the protocol: optimiser, schedule, mixing, selection, precision.
* the model's own config (``IFDDConfig``, ``FormerDFERConfig`` ...), resolved by the registry.

:func:`apply_overrides` turns CLI strings such as ``epochs=5`` or ``data.size=64`` into a new
frozen config with the field's type checked; an unknown key raises :class:`ConfigError` listing
the valid ones.

Example::

    >>> cfg = protocol_preset("unified")
    >>> apply_overrides(cfg, ["epochs=3", "lr=1e-3"]).epochs
    3
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from ifdd_bench.errors import ConfigError, suggest
from ifdd_bench.extras import require
from ifdd_bench.hashing import json_hash

DATASETS = ("synth", "dfew", "ferv39k", "mafw")
PROTOCOLS = ("reference", "unified")
#: temporal-reliance probes (``eval --perturb``, ``run ablation --perturb``) in table order; what each
#: does to a clip's frames: :mod:`ifdd_bench.engine.probes` and docs/probes.md
PERTURBATIONS = ("shuffle", "reverse", "single", "freeze-apex", "half-rate")
#: the perturbations that need each clip's apex frame (known on SynthDFER only: its clips.csv)
APEX_PERTURBATIONS = ("freeze-apex",)
#: fewest frames per clip a perturbation can reorder
PROBE_MIN_FRAMES = 2


def parse_perturbations(text: str | Sequence[str] | None, *, option: str = "--perturb") -> tuple[str, ...]:
    """``"shuffle,reverse"`` (or a sequence, or ``"all"``) -> names in :data:`PERTURBATIONS` order.

    An unknown name (or none at all) raises :class:`ConfigError` naming ``option`` and the closest
    valid name; ``None`` gives ``()`` (no probes).
    """
    if text is None:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one perturbation: {', '.join(PERTURBATIONS)} or all")
    if items == ["all"]:
        return PERTURBATIONS
    for item in items:
        if item not in PERTURBATIONS:
            raise ConfigError(f"{option}: unknown perturbation {item!r}{suggest(item, PERTURBATIONS)}; "
                              f"valid: {', '.join(PERTURBATIONS)}, all")
    return tuple(p for p in PERTURBATIONS if p in items)


#: ``--device`` of every command and the train config's default: ``auto`` = the first CUDA device
#: when torch sees one, else the CPU (docs/protocol.md, "Devices")
DEFAULT_DEVICE = "auto"

#: loggers a run can mirror its progress to besides its CSV files (ifdd_bench.engine.loggers):
#: name -> (package it imports, extra that installs it)
LOGGERS: Mapping[str, tuple[str, str]] = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}

PRECISIONS = ("fp32", "bf16", "fp16")  # TrainConfig.precision and `profile --precision`
DECODE_DEVICES = ("cpu", "cuda")  # DataConfig.decode_device


@dataclass(frozen=True)
class DataConfig:
    """Which clips a run reads and how they become tensors of shape (C, T, H, W) in [0, 1]."""

    dataset: str = "synth"  # synth | dfew | ferv39k | mafw
    data_root: str | None = None  # dataset folder as shipped; None -> embedded SynthDFER
    synth_preset: str = "default"  # SynthDFER preset used when dataset == "synth" and no root
    fold: int = 1  # official fold (1..5 for DFEW/MAFW/synth, 1 for FERV39k)
    frames: int = 16  # T, frames per clip fed to the model
    size: int = 112  # H = W after resizing / cropping
    sampling: str = "segment"  # segment (U x V, TSN style) | consecutive (reference) | uniform
    segments: int = 16  # U for segment sampling (U * V must equal frames)
    segment_len: int = 1  # V consecutive frames per segment
    frame_stride: int = 1  # stride for consecutive sampling (MAFW reference: 2)
    eval_sampling: str = "center"  # consecutive sampling at eval: center (deterministic) | random (reference FERV39k/MAFW)
    frame_source: str = "default"  # dfew: 16f | raw ; mafw: frames | faces ; default picks per dataset
    train_aug: str = "unified"  # reference | unified | none (clip-consistent augmentation preset)
    eval_views: int = 1  # temporal views averaged in logit space at evaluation
    val_fraction: float = 0.1  # stratified hold-out of the train fold (unified protocol)
    label_order: str = "official"  # MAFW only: official | dferclip
    workers: int | None = None  # DataLoader worker processes; None: 0 on the CPU, up to 8 on CUDA (docs/gpu.md)
    cache_clips: bool = False  # keep decoded uint8 clips in memory (small datasets only)
    clip_cache: str | None = None  # folder of the disk-backed, memory-mapped uint8 clip cache; None: off
    decode_device: str = "cpu"  # cpu | cuda: JPEG frames decoded by nvJPEG (torchvision decode_jpeg, batched)


@dataclass(frozen=True)
class TrainConfig:
    """The training protocol, identical for every model; only the model config differs."""

    protocol: str = "unified"  # reference (IFDD recipe, quirks included) | unified (clean comparison)
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-4  # peak learning rate actually applied (reference: 1e-4 / 32 * 16 = 5e-5)
    min_lr: float = 1e-6  # floor of the cosine schedule
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6  # learning rate of epoch 0
    schedule: str = "cosine"  # reference (exact IFDD per-epoch table, bug B5) | cosine (clean)
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    mixup: bool = False  # batch mixup/cutmix (timm semantics)
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5  # probability of cutmix instead of mixup
    label_smoothing: float = 0.1
    selection: str = "val_uar"  # val_uar (unified) | test_war (reference: best WAR on the test fold)
    grad_clip: float = 0.0  # 0 disables
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast (fp16 with a GradScaler); formerly `amp` (none|bf16|fp16)
    # frozen-backbone models (IFDD freeze_backbone): keep each clip's backbone features in memory, up
    # to this many MB, instead of recomputing them every epoch (ifdd_bench.models.memo); 0 = off
    feature_cache_mb: int = 0
    compile: bool = False  # torch.compile the model (falls back to eager, with a message, when compiling fails)
    channels_last: bool = False  # channels_last_3d memory format on GPU
    device: str = DEFAULT_DEVICE  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    seed: int = 0
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU
    eval_batch_size: int = 16
    log_every: int = 10  # steps between progress updates


def protocol_preset(name: str, **overrides: Any) -> TrainConfig:
    """Return the :class:`TrainConfig` of a named protocol (``reference`` or ``unified``).

    ``reference`` is IFDD's recipe as the published configs run it (spec 11); ``unified`` is the
    clean comparison protocol (baselines.md 7): same optimiser budget for every model, selection
    on a held-out validation split, plain cosine schedule.
    """
    if name == "reference":
        base = TrainConfig(
            protocol="reference", epochs=100, batch_size=16, optimizer="adamw", lr=5e-5,
            min_lr=5e-7, warmup_epochs=10, warmup_lr=1e-6, schedule="reference",
            weight_decay=1e-3, mixup=True, label_smoothing=0.1, selection="test_war",
        )
    elif name == "unified":
        base = TrainConfig()
    else:
        raise ConfigError(f"unknown protocol {name!r}{suggest(name, PROTOCOLS)}; valid: {', '.join(PROTOCOLS)}")
    return replace(base, **overrides) if overrides else base


# --------------------------------------------------------------------------------------------
# overrides


#: earlier names of config keys: (config class name, old key) -> (new key, old value -> new value).
#: ``--set amp=bf16`` and run folders written before the rename keep working
RENAMED_KEYS: Mapping[tuple[str, str], tuple[str, Mapping[str, str]]] = {
    ("TrainConfig", "amp"): ("precision", {"none": "fp32"}),
}


def renamed_key(cfg_cls: type, key: str, value: Any) -> tuple[str, Any]:
    """``(key, value)`` under the current name: ``amp=none`` on a TrainConfig -> ``precision=fp32``."""
    new = RENAMED_KEYS.get((cfg_cls.__name__, key))
    if new is None:
        return key, value
    name, values = new
    return name, values.get(value, value) if isinstance(value, str) else value


def _parse_bool(text: str, key: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"config key {key!r} expects a boolean (true/false), got {text!r}")


def _coerce(text: str, annotation: Any, key: str) -> Any:
    """Convert the string ``text`` to the type named by a dataclass field annotation."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"typing": typing}, {})  # annotations are simple builtins
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.strip().lower() in ("none", "null", ""):
            return None
        return _coerce(text, args[0], key)
    if origin in (tuple, Sequence, list):
        (inner, *_) = typing.get_args(annotation) or (str,)
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()] if inner is int else [
            p for p in text.split(",") if p.strip()]
        return tuple(_coerce(p, inner, key) for p in parts)
    if annotation is bool:
        return _parse_bool(text, key)
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config key {key!r} expects an integer, got {text!r}") from None
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"config key {key!r} expects a number, got {text!r}") from None
    return text


def _type_hints(cfg_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cfg_cls)
    except Exception:  # pragma: no cover - fall back to raw annotations
        return {f.name: f.type for f in fields(cfg_cls)}


def parse_overrides(items: Sequence[str]) -> list[tuple[str, str]]:
    """Split ``["a=1", "b.c=x"]`` into ``[("a", "1"), ("b.c", "x")]``; malformed items raise."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        pairs.append((key, value.strip()))
    return pairs


def apply_overrides(cfg: Any, items: Sequence[str] | Mapping[str, Any], *, what: str = "config") -> Any:
    """Return a copy of the frozen dataclass ``cfg`` with ``key=value`` overrides applied.

    ``items`` is a list of ``"key=value"`` strings (values are parsed to the field's type) or a
    mapping of already-typed values. Unknown keys raise :class:`ConfigError` naming the key and
    listing the valid ones.
    """
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = parse_overrides(items)
    names = {f.name for f in fields(cfg)}
    hints = _type_hints(type(cfg))
    updates: dict[str, Any] = {}
    for key, value in pairs:
        key, value = renamed_key(type(cfg), key, value)
        if key not in names:
            raise ConfigError(
                f"unknown {what} key {key!r}{suggest(key, names)}; valid keys: {', '.join(sorted(names))}"
            )
        updates[key] = _coerce(value, hints[key], key) if isinstance(value, str) else value
    return replace(cfg, **updates) if updates else cfg


def route_overrides(items: Sequence[str], scopes: Mapping[str, Any]) -> dict[str, list[str]]:
    """Route CLI overrides to the config they belong to.

    ``scopes`` maps a scope name (``"train"``, ``"data"``, ``"model"``) to a config instance (or
    dataclass type). ``"data.size=64"`` goes to scope ``data``; an unscoped ``"epochs=3"`` goes to
    the single scope that has that key. A key found in no scope, or in several, raises
    :class:`ConfigError`.
    """
    routed: dict[str, list[str]] = {name: [] for name in scopes}
    field_names = {name: {f.name for f in fields(obj)} for name, obj in scopes.items()}
    for name, obj in scopes.items():  # an earlier key name routes where its field lives
        cls = obj if isinstance(obj, type) else type(obj)
        field_names[name] |= {old for (owner, old) in RENAMED_KEYS if owner == cls.__name__}
    for key, value in parse_overrides(items):
        scope, _, bare = key.partition(".")
        if bare and scope in scopes:
            if bare not in field_names[scope]:
                raise ConfigError(
                    f"unknown {scope} key {bare!r}{suggest(bare, field_names[scope])}; "
                    f"valid keys: {', '.join(sorted(field_names[scope]))}"
                )
            routed[scope].append(f"{bare}={value}")
            continue
        owners = [name for name, keys in field_names.items() if key in keys]
        if not owners:
            everything = sorted(f"{s}.{k}" for s, ks in field_names.items() for k in ks)
            raise ConfigError(f"unknown config key {key!r}{suggest(key, [e.split('.', 1)[1] for e in everything])}; "
                              f"valid keys: {', '.join(everything)}")
        if len(owners) > 1:
            raise ConfigError(f"config key {key!r} is ambiguous; write one of: "
                              + ", ".join(f"{o}.{key}" for o in owners))
        routed[owners[0]].append(f"{key}={value}")
    return routed


def parse_loggers(values: str | Sequence[str] | None) -> tuple[str, ...]:
    """Logger names from a comma list or repeated options (``["tensorboard,wandb"]``), in order and
    without repeats. An unknown name, or a logger whose package is not installed, raises
    :class:`ConfigError` (naming the extra to install) before anything runs."""
    items = [values] if isinstance(values, str) else list(values or ())
    names = tuple(dict.fromkeys(n.strip().lower() for item in items for n in str(item).split(",") if n.strip()))
    if any(str(item).strip() for item in items) and not names:  # "--log ," names nothing
        raise ConfigError(f"--log needs a logger name: {', '.join(LOGGERS)}")
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"unknown logger {name!r}{suggest(name, LOGGERS)}; valid: {', '.join(LOGGERS)}",
                              hint="the CSV files are always written; --log adds tensorboard or wandb")
        module, extra = LOGGERS[name]
        require(module, extra=extra, feature=f"--log {name}")
    return names


# --------------------------------------------------------------------------------------------
# serialisation and hashing


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a (possibly nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def from_dict(cfg_cls: type, data: Mapping[str, Any], *, strict: bool = True) -> Any:
    """Rebuild a frozen config from :func:`to_dict` output (lists back to tuples).

    With ``strict`` unknown keys raise :class:`ConfigError`; otherwise they are ignored.
    """
    names = {f.name for f in fields(cfg_cls)}
    unknown = {key for key in data if renamed_key(cfg_cls, key, None)[0] not in names}
    if unknown and strict:
        raise ConfigError(f"{cfg_cls.__name__} has no key(s) {', '.join(sorted(unknown))}")
    hints = _type_hints(cfg_cls)
    kwargs = {}
    for key, value in data.items():
        key, value = renamed_key(cfg_cls, key, value)
        if key not in names:
            continue
        if isinstance(value, list):
            value = tuple(value)
        origin = typing.get_origin(hints[key])
        if origin is tuple and value is not None and not isinstance(value, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cfg_cls(**kwargs)


def config_hash(cfg: Any, *, exclude: Sequence[str] = ()) -> str:
    """Short stable hash (8 hex digits) of a config's fields, minus ``exclude``.

    Result rows carry the hash of their TrainConfig (without the seed and device) so that tables
    can refuse to compare rows trained under different protocols.
    """
    return json_hash({k: v for k, v in to_dict(cfg).items() if k not in set(exclude)})


#: TrainConfig fields that do not change what is being measured and stay out of the hash.
HASH_EXCLUDE = ("seed", "device", "log_every", "eval_batch_size", "compile", "deterministic", "feature_cache_mb")


def train_identity(cfg: TrainConfig) -> dict[str, Any]:
    """The TrainConfig fields that identify a protocol (:data:`HASH_EXCLUDE` left out), under the key
    names the hashes were first computed with (``precision`` as ``amp``: none | bf16 | fp16), so a
    renamed key changes no run id or train hash."""
    data = {k: v for k, v in to_dict(cfg).items() if k not in HASH_EXCLUDE}
    data["amp"] = "none" if data.get("precision") == "fp32" else data.get("precision")
    data.pop("precision", None)
    return dict(sorted(data.items()))


def train_hash(cfg: TrainConfig) -> str:
    """Protocol hash of a TrainConfig (seed, device and logging excluded)."""
    return json_hash(train_identity(cfg))


#: DataConfig fields that change speed but not results: a run may resume with other values, and
#: they stay out of the run identity
DATA_RUNTIME_FIELDS = ("workers", "cache_clips", "clip_cache")
#: DataConfig fields added after runs were recorded, with the value that leaves a run's identity as it
#: was: they enter the recipe hash and the resume identity only when set to something else
DATA_LATER_FIELDS: Mapping[str, Any] = {"decode_device": "cpu"}


def data_identity(data: DataConfig) -> dict[str, Any]:
    """The DataConfig fields that identify a run's data: all but :data:`DATA_RUNTIME_FIELDS`, and the
    :data:`DATA_LATER_FIELDS` only when they differ from their neutral value."""
    return {k: v for k, v in to_dict(data).items()
            if k not in DATA_RUNTIME_FIELDS and not (k in DATA_LATER_FIELDS and v == DATA_LATER_FIELDS[k])}

#: version of the run-id scheme written into config.json and checkpoints; 2 = readable part plus
#: the recipe hash (:func:`recipe_hash`). Folders without it are of the older scheme (no hash).
RUN_ID_SCHEME = 2


def recipe_hash(data: DataConfig, train: TrainConfig, model_overrides: Sequence[tuple[str, Any]] = ()) -> str:
    """Short hash (8 hex digits) of everything that changes a run's numbers beyond its readable id.

    Covers the data config (without the fold and :data:`DATA_RUNTIME_FIELDS`), the train config
    (without the seed and :data:`HASH_EXCLUDE`) and the model-config overrides. The model name,
    variant, dataset, fold, seed and protocol are in the readable part of the run id. Cells of one
    sweep that differ only in fold and seed share the hash.
    """
    payload = {
        "data": {k: v for k, v in sorted(data_identity(data).items()) if k != "fold"},
        "train": train_identity(train),
        "model": [[k, v] for k, v in model_overrides],
    }
    return json_hash(payload)


@dataclass(frozen=True)
class RunSpec:
    """Everything that identifies one training run (one cell of a sweep).

    Build it with :func:`ifdd_bench.spec.build_run_spec`, which applies the model's geometry and
    the protocol's data recipe; constructing it by hand skips those.
    """

    model: str
    variant: str = "full"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_overrides: tuple[tuple[str, Any], ...] = ()  # typed (key, value) pairs for the model config
    runs_dir: str = "runs"
    results_dir: str = "results"
    # loggers beside the CSV files (LOGGERS: tensorboard, wandb); where progress goes, not what is
    # trained, so they are outside the run id and a run may resume with other loggers
    loggers: tuple[str, ...] = ()

    @property
    def recipe_hash(self) -> str:
        """Hash of the data, train and model-override settings (see :func:`recipe_hash`)."""
        return recipe_hash(self.data, self.train, self.model_overrides)

    @property
    def run_id(self) -> str:
        """``{model}-{variant}-{dataset}-f{fold}-s{seed}-{protocol}-{recipe_hash}``: the run folder's
        name and the result rows' key; different settings never share it."""
        return (f"{self.model}-{self.variant}-{self.data.dataset}-f{self.data.fold}-s{self.train.seed}-"
                f"{self.train.protocol}-{self.recipe_hash}")
