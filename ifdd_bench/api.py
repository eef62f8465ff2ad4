"""The Python API: what the commands do, as functions (``from ifdd_bench import train, evaluate, ...``).

Each function is a thin wrapper over the library function the command calls, so Python and the
CLI give the same runs, files and rows::

    import ifdd_bench as ib

    ib.list_models()                                    # ["c3d", ..., "ifdd", "ifdd_tiny", ...]
    model = ib.create_model("ifdd_tiny", "no_issm")     # an nn.Module, random weights
    row = ib.train("ifdd_tiny", epochs=2, overrides=["lr=1e-3"])       # runs.csv row of the run
    run = ib.load_run(f"runs/{row['run_id']}")          # model (eval mode) + the spec it was trained with
    ib.evaluate(run.path, views=2)["row"]["uar"]
    ib.predict(run.path, ["clips/happy_01", "talk.mp4"])["predictions"][0]["label"]
    ib.export(run.path, "pt2,onnx")["formats"]["onnx"]["max_abs_diff"]

Importing this module is cheap: torch and the engine are imported by the functions that need them.
Errors are the CLI's (:class:`~ifdd_bench.errors.BenchError` subclasses, with the same messages).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ifdd_bench.config import RunSpec
from ifdd_bench.errors import ConfigError
from ifdd_bench.events import Progress

if TYPE_CHECKING:
    import torch

__all__ = ["create_model", "list_models", "load_run", "LoadedRun", "train", "evaluate", "predict", "export"]


def list_models() -> list[str]:
    """Names of every registered model (``ifdd-bench models``); each takes clips ``(B, 3, T, H, W)``
    in [0, 1] and returns logits ``(B, K)``."""
    from ifdd_bench.registry import list_models as names

    return names()


def create_model(name: str, variant: str | None = None, **kwargs: Any) -> "torch.nn.Module":
    """Build a registered model with random (or its configured initial) weights.

    ``variant`` names an ablation variant (default ``full``); ``kwargs`` go to
    :func:`ifdd_bench.registry.resolve_config`: ``num_classes``, ``frames``, ``img_size`` and
    ``overrides`` (``{"drop_path": 0.1}`` or ``["drop_path=0.1"]``).
    """
    from ifdd_bench.registry import create_model as build

    return build(name, variant, **kwargs)


@dataclass
class LoadedRun:
    """A trained run read back: its model in eval mode and the spec that trained it."""

    model: "torch.nn.Module"
    spec: RunSpec  # the configs the run was trained with (spec.run_id is the run folder's name)
    classes: list[str]  # logit index -> class name
    epoch: int  # the checkpoint's epoch (0-based; best.pt: the selected one)
    path: Path  # the checkpoint file that was read
    checkpoint: dict  # everything else the checkpoint holds (metrics, history, train config ...)


def load_run(source: str | os.PathLike, device: str = "cpu") -> LoadedRun:
    """A run folder (its ``best.pt``, else ``last.pt``) or a checkpoint file, as model + spec.

    The model is rebuilt from the stored config and weights
    (:func:`ifdd_bench.engine.checkpoint.load_model`); the spec from the run folder's
    ``config.json`` when present, else from the checkpoint. A damaged or foreign file raises
    :class:`~ifdd_bench.errors.CheckpointError`.
    """
    from ifdd_bench.engine.checkpoint import load_model
    from ifdd_bench.engine.evaluate import require_run_checkpoint
    from ifdd_bench.engine.migrate import spec_of
    from ifdd_bench.engine.runfiles import CONFIG

    model, ckpt = load_model(source, device, accept=require_run_checkpoint)  # older scheme: the migrate hint
    path = Path(ckpt["path"])
    config_file = path.parent / CONFIG
    config = ckpt
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except ValueError:
            config = ckpt  # a damaged config.json: the checkpoint carries the same configs
    stored = {**ckpt, **{k: config[k] for k in ("model_overrides", "results_dir") if k in config}}
    spec = spec_of(stored, str(path.parent.parent), str(stored.get("results_dir", "results")))
    return LoadedRun(model=model, spec=spec, classes=list(ckpt["classes"]), epoch=int(ckpt.get("epoch", 0)),
                     path=path, checkpoint=ckpt)


def train(spec: RunSpec | str, variant: str | None = None, *, progress: Progress | None = None,
          resume: bool = True, **request: Any) -> dict[str, Any]:
    """Train one run (``ifdd-bench run train``) and return its result row (the ``runs.csv`` columns).

    Pass a :class:`~ifdd_bench.config.RunSpec`, or a model name with the keywords of
    :func:`ifdd_bench.spec.build_run_spec` (``dataset``, ``data_root``, ``fold``, ``seed``,
    ``protocol``, ``epochs``, ``overrides``, ``device``, ``runs_dir``, ``results_dir``,
    ``loggers``)::

        row = train("ifdd_tiny", epochs=2, overrides=["lr=1e-3", "data.size=32"], loggers="tensorboard")

    The run folder is ``<runs_dir>/<row["run_id"]>``. A finished run returns its stored row; an
    interrupted one resumes (``resume=False``: from scratch). ``progress`` receives the engine's
    events (:class:`~ifdd_bench.engine.events.Reporter`).
    """
    from ifdd_bench.engine.run import train_run
    from ifdd_bench.spec import build_run_spec

    if isinstance(spec, RunSpec):
        if variant is not None or request:
            raise ConfigError("train(spec) takes a RunSpec alone; pass a model name to build one from keywords")
        run_spec = spec
    else:
        run_spec = build_run_spec(spec, variant, **request)
    return train_run(run_spec, progress=progress, resume=resume)


def evaluate(source: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Evaluate a run folder or checkpoint on a dataset split (``ifdd-bench eval``).

    Keywords of :func:`ifdd_bench.engine.evaluate.evaluate_run`: ``dataset``, ``data_root``,
    ``fold``, ``split`` (test | val), ``views``, ``overrides``, ``device``, ``batch_size``,
    ``results_dir``, ``progress``. Returns ``{"row", "per_class", "confusion", "classes",
    "out_dir"}``; the row is also appended to ``<results_dir>/evals.csv``.
    """
    from ifdd_bench.engine.evaluate import evaluate_run

    return evaluate_run(source, **options)


def predict(source: str | os.PathLike, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
            device: str = "auto", batch_size: int = 8, top: int | None = None, crop: bool | None = None,
            crop_config: Any = None) -> dict[str, Any]:
    """Class probabilities of frame folders or video files (``ifdd-bench predict``) with a run
    folder's or checkpoint's model, read as the run read its clips. ``crop`` (None: video files
    only; False: ``--no-crop``) and ``crop_config`` say which clips are face-cropped first.

    Returns ``{"classes", "predictions": [{"path", "label", "prob", "probs", "top"}], ...}``
    (see :func:`ifdd_bench.engine.predict.predict`).
    """
    from ifdd_bench.engine.predict import predict as run_predict

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return run_predict(items, checkpoint=source, device=device, batch_size=batch_size, top=top, crop=crop,
                       crop_config=crop_config)


def export(source: str | os.PathLike, formats: str | Sequence[str] = ("pt2", "onnx"),
           out_dir: str | os.PathLike | None = None, **options: Any) -> dict[str, Any]:
    """Export a run folder or checkpoint to ``torch.export`` (.pt2) and/or ONNX (``ifdd-bench
    export``), each checked against the eager model; returns the ``export.json`` record
    (:func:`ifdd_bench.engine.export.export_run`: ``batch``, ``atol``, ``progress``)."""
    from ifdd_bench.engine.export import export_run

    return export_run(source, formats, out_dir, **options)
