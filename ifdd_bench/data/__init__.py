"""Data: official DFEW / FERV39k / MAFW readers, list importers, sampling, augmentation, datasets.

Modules: ``labels`` (class lists, label orders and words, fold counts), ``records`` (ClipRecord,
SplitRecords), ``collect`` (clip resolution and problem collection shared by readers and lists),
``readers`` (official layouts; ``read_split`` dispatches per dataset), ``lists`` (other
repositories' list formats, ``data import``), ``decode`` (frames -> uint8 tensors),
``sampling`` (frame indices), ``transforms`` (clip-consistent augmentation), ``holdout`` (validation
split), ``dataset`` (ClipDataset, build_datasets), ``check`` (``data check``), ``loader_bench``
(``data bench``), ``faces`` (face cropping of one raw clip), ``facecrop`` (``data crop``), ``synth``
(the SynthDFER generator).

The names below are imported lazily so that ``import ifdd_bench.data.records`` (and ``labels``)
stays torch-free.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_datasets": "ifdd_bench.data.dataset",
    "ClipDataset": "ifdd_bench.data.dataset",
    "DatasetBundle": "ifdd_bench.data.dataset",
    "FrameCache": "ifdd_bench.data.dataset",
    "read_split": "ifdd_bench.data.readers",
    "check_dataset": "ifdd_bench.data.check",
    "ClipRecord": "ifdd_bench.data.records",
    "SplitRecords": "ifdd_bench.data.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ifdd_bench.data' has no attribute {name!r}")
