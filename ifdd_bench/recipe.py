"""Recipe files: a run request written down as YAML (``--config FILE.yaml`` or a shipped name).

A recipe holds what ``run train`` / ``run ablation`` take as options, plus a ``set:`` section whose
keys are exactly the ``-s/--set`` keys (``lr``, ``train.lr``, ``data.size``, ``model.drop_path``;
a ``train:``, ``data:`` or ``model:`` mapping inside ``set:`` is the same as its dotted keys)::

    model: ifdd
    dataset: dfew
    protocol: reference
    set:
      train:
        epochs: 100
        lr: 5.0e-5
      data.size: 224

This module reads and writes the format; it builds nothing. :func:`ifdd_bench.spec.build_run_spec`
takes a :class:`Recipe` and applies it between the protocol's defaults and the command line (docs:
docs/recipes.md). What ``ifdd-bench config show`` prints (:func:`spec_yaml`) is itself a recipe: its
derived keys (``run_id``, ``recipe_hash``, ``train_hash``) are checked against what
the recipe resolves to, never silently dropped.

No torch import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ifdd_bench.config import DataConfig, RunSpec, TrainConfig, to_dict, train_hash
from ifdd_bench.errors import ConfigError, suggest

#: folder of the recipes shipped with the package (package data, so a wheel has them)
SHIPPED_DIR = Path(__file__).resolve().parent / "recipes"

#: top-level keys that ``run train`` (and ``config show``) read, with the type each must have
RUN_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "model": str, "variant": str, "dataset": str, "data_root": str, "fold": int, "seed": int,
    "protocol": str, "epochs": int, "device": str, "runs_dir": str, "results_dir": str,
}
#: top-level keys only ``run ablation`` reads (a single ``variant`` / ``fold`` / ``seed`` works there too)
SWEEP_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "variants": (str, list), "folds": (int, str, list), "seeds": (int, str, list), "baselines": (str, list),
}
#: what :func:`spec_yaml` derives from a spec; in a recipe they must equal what it resolves to
DERIVED_KEYS = ("run_id", "recipe_hash", "train_hash")
#: the section of ``--set`` keys, and its scopes that may be written as nested mappings
SET_KEY = "set"
SCOPES = ("train", "data", "model")

#: spec fields that are top-level request keys, so the ``set:`` section that config show writes leaves them out
_TRAIN_TOP = ("protocol", "seed", "device")
_DATA_TOP = ("dataset", "data_root", "fold")


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe file. ``values``: the top-level request keys; ``overrides``: the ``set:``
    entries as ``(key=value, line)`` pairs in file order; ``lines``: top-level key -> line."""

    source: str  # the file as the user named it (or the shipped recipe's name)
    values: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[tuple[str, int], ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)
    derived: Mapping[str, Any] = field(default_factory=dict)

    def where(self, key: str | None = None, line: int | None = None) -> str:
        """``"FILE, line N"`` for a top-level key (or an explicit line); ``"FILE"`` when unknown."""
        line = line if line is not None else self.lines.get(key or "")
        return f"{self.source}, line {line}" if line else self.source

    @property
    def items(self) -> list[str]:
        """The ``set:`` entries as ``--set`` strings (``key=value``)."""
        return [item for item, _ in self.overrides]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def refuse(self, keys: Sequence[str], command: str, hint: str) -> None:
        """Raise :class:`ConfigError` for the first of ``keys`` the recipe holds (keys another command reads)."""
        for key in keys:
            if key in self.values:
                raise ConfigError(f"{self.where(key)}: key {key!r} is not read by {command}", hint=hint)

    def check_model(self, model: str | None) -> str | None:
        """The model the request trains: the recipe's, or ``model`` when the recipe names none.

        A recipe written for one model and a different ``--model`` is refused (the recipe's keys were
        chosen for its model)."""
        mine = self.values.get("model")
        if model and mine and model != mine:
            raise ConfigError(f"{self.where('model')}: the recipe is for model {mine!r}, but --model {model} "
                              "was given",
                              hint="drop --model to train the recipe's model, or copy the recipe and change its "
                                   "model: line (its settings were chosen for that model)")
        return model or mine

    def without_model(self, items: Sequence[str]) -> "Recipe":
        """This recipe for another model (a sweep's baseline cells): no ``model``/``variant``, no
        derived keys, and ``items`` (the scoped train and data entries) as its ``set:`` section."""
        values = {k: v for k, v in self.values.items() if k not in ("model", "variant")}
        return replace(self, values=values, overrides=tuple((item, 0) for item in items), derived={})


# --------------------------------------------------------------------------------------------
# finding and reading


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``dfew-reference``, ``unified`` ...)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def recipe_path(name: str | os.PathLike) -> tuple[Path, str]:
    """The file of ``--config NAME``: an existing path, else a shipped recipe's name (with or
    without ``.yaml``). Returns the path and the label messages use."""
    path = Path(name)
    if path.is_file():
        return path, str(name)
    stem = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = SHIPPED_DIR / f"{stem}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped, f"{stem} ({shipped})"
    names = shipped_recipes()
    raise ConfigError(f"--config {name}: no such file and no shipped recipe of that name{suggest(stem, names)}",
                      hint=f"shipped recipes: {', '.join(names)}; or give the path of a YAML file")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _as_override(key: str, value: Any, where: str) -> str:
    """A YAML value as the ``key=value`` string ``--set`` would take (types are checked by the config)."""
    if isinstance(value, (list, tuple)):
        if not all(_scalar(v) and v is not None for v in value):
            raise ConfigError(f"{where}: set key {key!r} takes a list of plain values, got {value!r}")
        return f"{key}={','.join(_text(v) for v in value)}"
    if not _scalar(value):
        raise ConfigError(f"{where}: set key {key!r} takes a plain value, got a {type(value).__name__}")
    return f"{key}={_text(value)}"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _mapping_lines(node: yaml.Node, source: str) -> dict[str, tuple[int, yaml.Node]]:
    """Key -> (line, value node) of a YAML mapping node; duplicate keys are refused (YAML would keep
    the last one silently)."""
    out: dict[str, tuple[int, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key, line = str(key_node.value), key_node.start_mark.line + 1
        if key_node.tag != "tag:yaml.org,2002:str":  # 1:, on:, yes:, << are not text keys to YAML
            raise ConfigError(f"{source}, line {line}: key {key!r} is not read as text by YAML (a number, a "
                              "yes/no/on/off boolean or a merge key)", hint=f"quote it if it is meant: '{key}':")
        if key in out:
            raise ConfigError(f"{source}, line {line}: key {key!r} appears twice (first on line {out[key][0]})")
        out[key] = (line, value_node)
    return out


def _check_type(key: str, value: Any, kinds: type | tuple[type, ...], where: str) -> None:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join({str: "text", int: "an integer", list: "a list"}.get(k, k.__name__) for k in kinds)
        raise ConfigError(f"{where}: key {key!r} takes {names}, got {value!r}")


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse recipe text. Raises :class:`ConfigError` naming ``source`` and the line for YAML syntax
    errors, unknown or repeated keys (with the closest valid key) and values of the wrong type."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}{at}: not valid YAML: {problem}",
                          hint="a recipe is a YAML mapping of `key: value` lines (docs/recipes.md)") from None
    if data is None:
        raise ConfigError(f"{source}: the recipe is empty", hint="write at least e.g. `model: ifdd_tiny`")
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}: a recipe is a YAML mapping of `key: value` lines, got a {type(data).__name__}")
    known = [*RUN_KEYS, *SWEEP_KEYS, *DERIVED_KEYS, SET_KEY]
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    derived: dict[str, Any] = {}
    overrides: list[tuple[str, int]] = []
    for key, (line, value_node) in _mapping_lines(node, source).items():
        value, where = data[key], f"{source}, line {line}"
        lines[key] = line
        if key == SET_KEY:
            overrides += _set_entries(value, value_node, where, source)
        elif key in DERIVED_KEYS:
            derived[key] = value
        elif key in RUN_KEYS or key in SWEEP_KEYS:
            if value is not None:
                _check_type(key, value, {**RUN_KEYS, **SWEEP_KEYS}[key], where)
                values[key] = value
        elif "." in key or _is_set_key(key):
            raise ConfigError(f"{where}: {key!r} is a --set key, which a recipe writes under `set:`",
                              hint=f"write it as `set: {{{key}: {_text(value)}}}` (docs/recipes.md)")
        else:
            raise ConfigError(f"{where}: unknown recipe key {key!r}{suggest(key, known)}",
                              hint=f"valid keys: {', '.join(known)}; --set keys go under `set:`")
    if "epochs" in values and any(item.split("=", 1)[0] in ("epochs", "train.epochs") for item, _ in overrides):
        raise ConfigError(f"{source}, line {lines['epochs']}: epochs is given twice (top level and under set:); "
                          "keep one")
    return Recipe(source=source, values=values, overrides=tuple(overrides), lines=lines, derived=derived)


def _set_entries(value: Any, node: yaml.Node, where: str, source: str) -> list[tuple[str, int]]:
    """The ``set:`` section as ``(key=value, line)`` pairs; a scope mapping becomes dotted keys."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: `set:` is a mapping of --set keys to values (e.g. `lr: 1.0e-4`)")
    entries = []
    for key, (line, child) in _mapping_lines(node, source).items():
        item = value[key]
        if key in SCOPES and isinstance(item, dict):
            for sub, (sub_line, _) in _mapping_lines(child, source).items():
                entries.append((_as_override(f"{key}.{sub}", item[sub], f"{source}, line {sub_line}"), sub_line))
        else:
            entries.append((_as_override(key, item, f"{source}, line {line}"), line))
    return entries


def _is_set_key(key: str) -> bool:
    return key in {f.name for f in fields(TrainConfig)} | {f.name for f in fields(DataConfig)}


def load_recipe(name: str | os.PathLike) -> Recipe:
    """Read ``--config NAME`` (a YAML file or a shipped recipe's name) into a :class:`Recipe`."""
    path, label = recipe_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {label}: cannot read the file: {getattr(err, 'strerror', None) or err}") from None
    return parse_recipe(text, label)


# --------------------------------------------------------------------------------------------
# checking and writing


def check_derived(recipe: Recipe, spec: RunSpec) -> None:
    """Refuse a recipe whose derived keys (as ``config show`` wrote them) differ from what it resolves
    to: a pinned recipe was edited, or a command-line option changed the run."""
    actual = {"run_id": spec.run_id, "recipe_hash": spec.recipe_hash, "train_hash": train_hash(spec.train)}
    for key, want in recipe.derived.items():
        if str(want) != actual[key]:
            raise ConfigError(f"{recipe.where(key)}: the recipe pins {key} {want} but resolves to {actual[key]}",
                              hint="a setting differs from when `config show` wrote it (an edit or a command-line "
                                   f"option); delete the {key} line to accept the new identity")


def spec_document(spec: RunSpec) -> dict[str, Any]:
    """The spec as a recipe mapping: identity, request keys and every resolved setting under ``set:``
    (what :func:`spec_yaml` prints)."""
    train = {k: v for k, v in to_dict(spec.train).items() if k not in _TRAIN_TOP}
    data = {k: v for k, v in to_dict(spec.data).items() if k not in _DATA_TOP}
    settings: dict[str, Any] = {"train": train, "data": data}
    if spec.model_overrides:
        settings["model"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.model_overrides}
    return {
        "run_id": spec.run_id, "recipe_hash": spec.recipe_hash, "train_hash": train_hash(spec.train),
        "model": spec.model, "variant": spec.variant, "dataset": spec.data.dataset, "data_root": spec.data.data_root,
        "fold": spec.data.fold, "seed": spec.train.seed, "protocol": spec.train.protocol,
        "device": spec.train.device, "runs_dir": spec.runs_dir, "results_dir": spec.results_dir,
        SET_KEY: settings,
    }


def spec_yaml(spec: RunSpec) -> str:
    """``ifdd-bench config show``: the resolved spec as YAML, readable back as a recipe that resolves
    to the same spec (its derived keys pin the identity)."""
    header = ("# the resolved run spec; `--config THIS_FILE` trains exactly this run\n"
              "# run_id, recipe_hash and train_hash are derived: checked when read back (delete them after an edit)\n")
    return header + yaml.safe_dump(spec_document(spec), sort_keys=False, default_flow_style=False, width=110)
