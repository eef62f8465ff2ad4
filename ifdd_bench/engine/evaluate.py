"""``ifdd-bench eval``: a trained run (or checkpoint) on a dataset split, scored as the engine does.

::

    out = evaluate_run("runs/ifdd-full-dfew-f1-s0-reference-1a2b3c4d", fold=2, views=2)
    out["row"]["uar"], out["out_dir"]    # metrics, and where predictions.csv / metrics.json went

The model is rebuilt from the checkpoint (its config and weights). The clips are read with the
run's own data config when the dataset is the one it was trained on; on another dataset, with
that dataset's recipe under the run's protocol (:func:`ifdd_bench.spec.build_run_spec`) at the
model's input size. Every check (identity scheme, classes, frame count, split) runs before anything
is written. Outputs: ``<run_dir>/evals/<eval_id>/predictions.csv`` and ``metrics.json``, and one
row in ``<results_dir>/evals.csv`` with ``kind = "eval"`` (never in ``runs.csv``, so sweeps and
reports of training runs do not mix evaluations in).

With ``perturb`` (``ifdd-bench eval RUN --perturb shuffle,reverse,single,freeze-apex,half-rate``)
the same pass also scores the temporal-reliance probes (:mod:`ifdd_bench.engine.probes`): one row
per perturbation in ``<results_dir>/probes.csv``, and ``probes.json`` / ``probe_predictions.csv``
beside ``predictions.csv``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from ifdd_bench.config import (RUN_ID_SCHEME, DataConfig, apply_overrides, data_identity, from_dict,
                               parse_perturbations, to_dict)
from ifdd_bench.engine import runfiles as F
from ifdd_bench.data.holdout import VAL_SPLIT_FILE
from ifdd_bench.engine.accel import loader_workers
from ifdd_bench.engine.checkpoint import atomic_write_text, load_model
from ifdd_bench.engine.loaders import clip_ids
from ifdd_bench.engine.distributed import resolve_device
from ifdd_bench.engine.environment import git_sha
from ifdd_bench.engine.metrics import classification_metrics
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.events import Progress
from ifdd_bench.hashing import json_hash
from ifdd_bench.results import EVALS_CSV, PROBES_CSV, append_rows

SPLITS = ("test", "val")
#: what ``--perturb`` adds to the evaluation's folder: the probe rows and the per-clip predictions
PROBES_JSON = "probes.json"
PROBE_PREDICTIONS = "probe_predictions.csv"


def check_scheme(ckpt: dict, path: Path) -> None:
    """Refuse a checkpoint written under the older run-id scheme (no recipe hash in its run id)."""
    if int(ckpt.get("run_id_scheme", 1)) < RUN_ID_SCHEME:
        folder = path.parent
        raise CheckpointError(
            f"{path} belongs to a run folder of the older identity scheme (run id {ckpt.get('run_id')!r} "
            f"has no recipe hash)",
            hint=f"rename it first: ifdd-bench runs migrate --runs-dir {folder.parent}")


def require_run_checkpoint(ckpt: dict, path: Path) -> None:
    """``load_model``'s accept hook for what rebuilds a run (eval, ``ifdd_bench.load_run``): the
    current identity scheme and the configs and names the run's spec is made of."""
    check_scheme(ckpt, path)
    for key in ("data_config", "train_config", "variant"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; it cannot be evaluated")


def eval_data_config(ckpt: dict, *, dataset: str | None = None, data_root: str | None = None,
                     fold: int | None = None, views: int | None = None,
                     overrides: Sequence[str] = ()) -> DataConfig:
    """The data config an evaluation reads: the run's own on its dataset, else the other dataset's
    recipe under the run's protocol at the model's input size; then ``fold``, ``views`` and
    ``data.*`` overrides. Raises :class:`ConfigError` when the frames or size do not fit the model."""
    from ifdd_bench.spec import build_run_spec

    trained = from_dict(DataConfig, ckpt["data_config"], strict=False)
    model_cfg = ckpt["model_config"]
    dataset = dataset or trained.dataset
    if dataset == trained.dataset:  # the run's own data config; another copy of it with --data-root
        data = replace(trained, data_root=os.path.abspath(data_root)) if data_root else trained
    else:
        spec = build_run_spec(ckpt["model"], ckpt.get("variant"), dataset=dataset, data_root=data_root,
                              protocol=ckpt.get("protocol", "unified"))
        data = replace(spec.data, size=trained.size)
    if fold is not None:
        data = replace(data, fold=fold)
    if views is not None:
        if views < 1:
            raise ConfigError(f"--views must be >= 1, got {views}")
        data = replace(data, eval_views=views)
    items = [item[len("data."):] if item.startswith("data.") else item for item in overrides]
    data = apply_overrides(data, items, what="data config")
    data = replace(data, cache_clips=False)  # one pass over one split: nothing to gain from a cache
    frames, size = int(model_cfg.get("frames", data.frames)), int(model_cfg.get("img_size", data.size))
    if data.frames != frames:
        raise ConfigError(f"the checkpoint's model takes {frames} frames but the {data.dataset} recipe reads "
                          f"{data.frames}", hint=f"add --set data.frames={frames} (and a sampling that fits)")
    if data.size != size:
        raise ConfigError(f"the checkpoint's model takes {size}x{size} pixels but data.size is {data.size}",
                          hint=f"drop the data.size override or set data.size={size}")
    return data


def eval_id(data: DataConfig, split: str) -> str:
    """``{dataset}-f{fold}-{split}-v{views}-{hash}``: names an evaluation's folder; the hash covers
    the rest of the data config, so two evaluations with other settings never share a folder."""
    digest = json_hash(data_identity(data))
    return f"{data.dataset}-f{data.fold}-{split}-v{data.eval_views}-{digest}"


def evaluate_run(source: str | Path, *, dataset: str | None = None, data_root: str | None = None,
                 fold: int | None = None, split: str = "test", views: int | None = None,
                 overrides: Sequence[str] = (), device: str = "auto", batch_size: int | None = None,
                 perturb: str | Sequence[str] | None = None, probe_seed: int = 0,
                 results_dir: str | Path = "results", record_eval: bool = True,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Score a run folder's ``best.pt`` (or a checkpoint file) on one split of a dataset.

    Returns ``{"row", "per_class", "confusion", "classes", "out_dir"}`` (and ``"probes"`` with
    ``perturb``). ``dataset`` / ``data_root`` / ``fold`` default to the run's own; ``split`` is
    ``test`` or ``val`` (the unified protocol's hold-out of the train fold, seeded as in
    training); ``views`` sets the temporal views averaged per clip.

    ``perturb`` (``"shuffle,reverse"``, a sequence of names or ``"all"``) adds the
    temporal-reliance probes (:mod:`ifdd_bench.engine.probes`): the same pass scores each
    perturbation of the clips, seeded by ``probe_seed``; one row per perturbation goes to
    ``<results_dir>/probes.csv`` and ``probes.json`` / ``probe_predictions.csv`` to the evaluation's
    folder. Bad requests (unknown perturbation, freeze-apex without apex truth, clips of one frame)
    raise a :class:`~ifdd_bench.errors.BenchError` before anything is written. ``record_eval=False``
    leaves the clean row out of ``evals.csv`` (the sweep's probes: ``runs.csv`` has those numbers).
    """
    from ifdd_bench.data import build_datasets
    from ifdd_bench.engine import probes as P
    from ifdd_bench.engine.capture import synth_truth
    from ifdd_bench.engine.loop import evaluate

    names = parse_perturbations(perturb)
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    model, ckpt = load_model(source, "cpu", accept=require_run_checkpoint)  # read once; moved to the device below
    path = Path(ckpt["path"])
    run_dir = path.parent
    protocol = ckpt.get("protocol", "unified")
    seed = int(ckpt["train_config"].get("seed", 0))
    data = eval_data_config(ckpt, dataset=dataset, data_root=data_root, fold=fold, views=views,
                            overrides=overrides)
    trained = from_dict(DataConfig, ckpt["data_config"], strict=False)
    if split == "val" and protocol != "unified":
        raise ConfigError(f"the {protocol} protocol has no validation split (it selects on the test fold)",
                          hint="evaluate --split test")
    P.check_frames(names, data)  # before the dataset is read
    same_holdout = (data.dataset, data.data_root, data.fold) == (trained.dataset, trained.data_root, trained.fold)
    holdout_dir = run_dir if same_holdout and (run_dir / VAL_SPLIT_FILE).exists() else None
    bundle = build_datasets(data, seed=seed, protocol="unified" if split == "val" else protocol,
                            run_dir=holdout_dir, progress=progress)
    classes = list(ckpt["classes"])
    if list(bundle.classes) != classes:
        how = "in another order" if sorted(bundle.classes) == sorted(classes) else "other classes"
        raise ConfigError(f"the checkpoint predicts {len(classes)} classes ({', '.join(classes)}) but "
                          f"{data.dataset} fold {data.fold} has {len(bundle.classes)} ({', '.join(bundle.classes)}): "
                          f"{how}", hint="evaluate on a dataset with the model's label space (MAFW: "
                                         "--set data.label_order=... picks the order)")
    dataset_split = bundle.val if split == "val" else bundle.test
    if dataset_split is None or len(dataset_split) == 0:
        raise ConfigError(f"{data.dataset} fold {data.fold} has no clips in its {split} split")
    dataset_split.set_epoch(int(ckpt.get("epoch", 0)))
    apex = P.apex_positions(names, data, dataset_split, lambda: synth_truth(bundle, data))

    dev, _ = resolve_device(device)
    model.to(dev)
    loader = DataLoader(dataset_split, batch_size=batch_size or int(ckpt["train_config"].get("eval_batch_size", 16)),
                        shuffle=False, num_workers=loader_workers(data.workers, dev), pin_memory=dev.type == "cuda")
    if progress:
        progress({"kind": "eval_start", "clips": len(dataset_split), "split": split, "dataset": data.dataset,
                  "perturbations": list(names)})
    ids = clip_ids(dataset_split)
    probed = None
    if names:  # one pass scores the clean clips and every perturbation of them
        probed = P.probe_pass(model, loader, names, device=dev, seed=probe_seed, apex=apex, progress=progress)
        metrics = classification_metrics(probed.preds[P.CLEAN], probed.labels, len(classes))
        predictions = [{"index": int(i), "label": int(label), "pred": int(pred), "probs": probs.tolist()}
                       for i, label, pred, probs in zip(probed.index, probed.labels, probed.preds[P.CLEAN],
                                                        probed.probs[P.CLEAN])]
    else:
        metrics, predictions = evaluate(model, loader, len(classes), device=dev, collect=True)
    for pred in predictions:
        pred["clip_id"] = ids[pred["index"]] if ids else pred["index"]

    ident = eval_id(data, split)
    out_dir = run_dir / "evals" / ident
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row = {
        "kind": "eval", "eval_id": ident, "run_id": ckpt.get("run_id"), "model": ckpt["model"],
        "variant": ckpt.get("variant"), "protocol": protocol, "train_hash": ckpt.get("train_hash"),
        "seed": seed, "checkpoint": path.name, "epoch": ckpt.get("epoch"),
        "trained_dataset": trained.dataset, "trained_fold": trained.fold,
        "dataset": data.dataset, "fold": data.fold, "split": split, "views": data.eval_views,
        "frames": data.frames, "size": data.size, "clips": len(dataset_split), "num_classes": len(classes),
        "uar": metrics["uar"], "war": metrics["war"], "device": str(dev), "torch_version": str(torch.__version__),
        "git_sha": git_sha(), "finished_at": finished_at,
    }
    per_class = [{"eval_id": ident, "run_id": ckpt.get("run_id"), "class_index": k, "class_name": name,
                  "recall": metrics["recall"][k], "support": metrics["support"][k]}
                 for k, name in enumerate(classes)]
    result = {"row": row, "per_class": per_class, "confusion": metrics["confusion"], "classes": classes,
              "data_config": to_dict(data)}
    rows = []
    if probed is not None:
        rows = P.probe_rows(probed, names, len(classes), _probe_base(row), seed=probe_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    F.write_predictions(out_dir, predictions, classes)
    F.write_json(out_dir / "metrics.json", result)
    if probed is not None:
        atomic_write_text(out_dir / PROBE_PREDICTIONS, F.csv_text(P.prediction_rows(probed, names, ids, classes)))
        F.write_json(out_dir / PROBES_JSON, {"rows": rows, "data_config": to_dict(data)})
    if record_eval:
        append_rows(Path(results_dir) / EVALS_CSV, [row])
    if rows:
        append_rows(Path(results_dir) / PROBES_CSV, rows)
    return {**result, "out_dir": str(out_dir), **({"probes": rows} if probed is not None else {})}


#: the evaluation row's columns a probes.csv row repeats (the run, what was evaluated, provenance)
PROBE_BASE_COLUMNS = ("eval_id", "run_id", "model", "variant", "dataset", "fold", "seed", "protocol", "train_hash",
                      "split", "views", "frames", "size", "checkpoint", "epoch", "trained_dataset", "trained_fold",
                      "device", "torch_version", "git_sha", "finished_at")


def _probe_base(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in PROBE_BASE_COLUMNS}
