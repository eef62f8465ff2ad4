"""ifdd-bench: benchmark and ablation toolkit for dynamic facial expression recognition.

The Python API (:mod:`ifdd_bench.api`), imported on first use so that ``import ifdd_bench`` stays
cheap and loads no torch::

    from ifdd_bench import create_model, list_models, load_run, train, evaluate, predict, export
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: the API's names, resolved from ifdd_bench.api on first access
_API = ("create_model", "list_models", "load_run", "LoadedRun", "train", "evaluate", "predict", "export")
__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors only
    from ifdd_bench.api import (LoadedRun, create_model, evaluate, export, list_models, load_run, predict,
                                train)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module("ifdd_bench.api"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'ifdd_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
