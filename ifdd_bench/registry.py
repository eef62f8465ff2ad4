"""Model registry: one dict filled by a decorator, read by the engine, profiler and sweeps.

A model family module (``ifdd_bench/models/ifdd.py``, ``baselines/c3d.py`` ...) registers tiny
entry-point functions at its bottom::

    @register_model("ifdd_tiny", config_cls=IFDDConfig, ablations=ABLATIONS,
                    description="IFDD, CPU-sized geometry")
    def ifdd_tiny(cfg: IFDDConfig) -> nn.Module:
        return IFDD(cfg)

and gives the preset's config defaults with ``defaults={...}``. Every model config dataclass has
the fields ``num_classes``, ``frames`` and ``img_size`` so the engine can set them from the data.

``create_model("ifdd_tiny", variant="no_issm", num_classes=7)`` resolves the config (defaults,
then the variant's overrides, then the caller's) and builds the module. ``resolve_config`` returns
only the config, so runs and checkpoints can record it and rebuild the model later with
``build_from_config``. This module never imports torch itself.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ifdd_bench.config import apply_overrides, from_dict, to_dict
from ifdd_bench.errors import ConfigError, suggest, unknown

#: modules whose import registers models; imported lazily on first registry access
MODEL_MODULES = ("ifdd_bench.models.ifdd", "baselines")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model preset."""

    name: str
    build: Callable[[Any], Any]  # build(cfg) -> torch.nn.Module
    config_cls: type  # frozen dataclass with num_classes / frames / img_size fields
    defaults: Mapping[str, Any] = field(default_factory=dict)  # preset values over config_cls()
    ablations: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"full": {}})
    family: str = ""
    description: str = ""

    def default_config(self) -> Any:
        """The preset's config before any variant or user override."""
        return dataclasses.replace(self.config_cls(), **dict(self.defaults))


_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False


def register_model(
    name: str,
    *,
    config_cls: type,
    defaults: Mapping[str, Any] | None = None,
    ablations: Mapping[str, Mapping[str, Any]] | None = None,
    family: str = "",
    description: str = "",
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator registering ``fn(cfg) -> nn.Module`` under ``name``.

    Registering the same name twice from a different function raises :class:`ValueError`.
    """

    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.build.__qualname__ != fn.__qualname__:
            raise ValueError(f"model {name!r} is already registered by {existing.build.__module__}")
        names = {f.name for f in dataclasses.fields(config_cls)}
        missing = {"num_classes", "frames", "img_size"} - names
        if missing:
            raise TypeError(f"{config_cls.__name__} lacks required field(s) {sorted(missing)}")
        _REGISTRY[name] = ModelEntry(
            name=name,
            build=fn,
            config_cls=config_cls,
            defaults=dict(defaults or {}),
            ablations=dict(ablations or {"full": {}}),
            family=family or fn.__module__.rsplit(".", 1)[-1],
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
        )
        return fn

    return deco


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:  # a family package not written yet
            if err.name != mod:
                raise


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    _load()
    return sorted(_REGISTRY)


def library_models() -> list[str]:
    """Sorted names of the models the toolkit itself registers (``ifdd_bench`` and ``baselines``),
    without those registered by tests or user scripts in the same process."""
    _load()
    return sorted(n for n, e in _REGISTRY.items() if e.build.__module__.startswith(("ifdd_bench.", "baselines.")))


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name``; unknown names raise with close suggestions."""
    _load()
    if name not in _REGISTRY:
        raise unknown("model", name, _REGISTRY)
    return _REGISTRY[name]


def ablations(name: str) -> dict[str, dict[str, Any]]:
    """Named variants of a model: ``{"full": {}, "no_issm": {"issm": False}, ...}``."""
    return {k: dict(v) for k, v in get_entry(name).ablations.items()}


def resolve_config(
    name: str,
    variant: str | None = None,
    *,
    num_classes: int | None = None,
    frames: int | None = None,
    img_size: int | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> Any:
    """Resolve a model's frozen config: preset defaults, then variant, then data shape, then user.

    ``overrides`` may be typed values or ``"key=value"`` strings; unknown keys raise
    :class:`ConfigError` listing the config's keys.
    """
    entry = get_entry(name)
    cfg = entry.default_config()
    variant = variant or "full"
    if variant not in entry.ablations:
        raise ConfigError(
            f"unknown variant {variant!r} for model {name!r}{suggest(variant, entry.ablations)}; "
            f"valid: {', '.join(entry.ablations)}"
        )
    cfg = apply_overrides(cfg, dict(entry.ablations[variant]), what=f"{name} config")
    shape = {k: v for k, v in (("num_classes", num_classes), ("frames", frames), ("img_size", img_size)) if v is not None}
    cfg = apply_overrides(cfg, shape, what=f"{name} config")
    if overrides:
        cfg = apply_overrides(cfg, overrides, what=f"{name} config")
    return cfg


def build_from_config(name: str, cfg: Any) -> Any:
    """Build the module of model ``name`` from an already-resolved config (or its dict form)."""
    entry = get_entry(name)
    if isinstance(cfg, Mapping):
        cfg = from_dict(entry.config_cls, cfg)
    if not isinstance(cfg, entry.config_cls):
        raise ConfigError(f"model {name!r} expects a {entry.config_cls.__name__}, got {type(cfg).__name__}")
    return entry.build(cfg)


#: config fields that only name a file of initial weights; a trained checkpoint's weights replace
#: them, so a model rebuilt from a checkpoint does not need that file any more
INIT_FIELDS = ("pretrained", "pretrained_path")


def build_for_checkpoint(name: str, cfg: Mapping[str, Any]) -> Any:
    """Build model ``name`` from a checkpoint's config dict, without loading initial-weight files.

    The checkpoint's state dict is loaded afterwards by the caller, so :data:`INIT_FIELDS` are
    cleared: a checkpoint stays usable after its initialisation file is gone.
    """
    return build_from_config(name, {k: (None if k in INIT_FIELDS else v) for k, v in dict(cfg).items()})


def create_model(name: str, variant: str | None = None, **kwargs: Any) -> Any:
    """Resolve the config (see :func:`resolve_config`) and build the model."""
    cfg = resolve_config(name, variant, **kwargs)
    return build_from_config(name, cfg)


def describe_models() -> list[dict[str, Any]]:
    """One JSON-ready row per registered model (``ifdd-bench models``): name, family, variants, description."""
    rows = []
    for name in list_models():
        entry = get_entry(name)
        rows.append({"model": name, "family": entry.family, "variants": list(entry.ablations),
                     "description": entry.description})
    return rows


def describe(name: str, variant: str | None = None) -> dict[str, Any]:
    """JSON-ready description: name, family, variant and the resolved config."""
    entry = get_entry(name)
    return {
        "model": name,
        "family": entry.family,
        "variant": variant or "full",
        "config": to_dict(resolve_config(name, variant)),
    }
