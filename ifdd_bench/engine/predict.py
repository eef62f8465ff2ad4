"""Classify frame folders or video files with a trained checkpoint.

::

    result = predict(["clips/happy_01", "clips/talk.mp4"], checkpoint="runs/ifdd_tiny-full-synth-f1-s0-unified")
    result["predictions"][0]["top"]   # [("happy", 0.91), ("surprise", 0.05), ...]

The checkpoint (a run folder -> its ``best.pt``, falling back to ``last.pt``; or a ``.pt`` file)
carries the model name and resolved config, so the model is rebuilt exactly
(:func:`ifdd_bench.engine.checkpoint.load_model`); clips are read with
the run's own data config (frames, size, sampling, evaluation views) through the same
:class:`~ifdd_bench.data.dataset.ClipDataset` code as training-time evaluation.

Raw videos first become face crops like the datasets' (:func:`ifdd_bench.data.faces.crop_clip`:
detect, follow and crop the largest face into 224 x 224 frames in a temporary folder): ``crop=None``
(default) crops video files and takes frame folders as they are (a dataset's frame folders are
already face crops); ``crop=True`` crops both, ``crop=False`` neither. A clip without a face raises
:class:`~ifdd_bench.data.faces.NoFaceError` (a DataError) instead of getting an emotion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ifdd_bench.config import DataConfig, from_dict
from ifdd_bench.engine.checkpoint import load_model
from ifdd_bench.engine.distributed import resolve_device
from ifdd_bench.engine.loop import clip_logits
from ifdd_bench.errors import ConfigError, DataError


def _check_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Each path as a Path, after checking it is a folder of frames or a video file."""
    from ifdd_bench.data.decode import is_video, list_frames

    out = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not list_frames(path):
                raise DataError(f"{path} contains no image frames (.jpg/.png/...)")
        elif path.is_file() and not is_video(path):
            raise DataError(f"{path} is neither a folder of frames nor a video file (.mp4/.avi/...)")
        elif not path.exists():
            raise DataError(f"{path} does not exist")
        out.append(path)
    return out


def _records(paths: Sequence[Path], crop: bool | None, crop_cfg: Any, workdir: Path) -> tuple[list, list]:
    """``(ClipRecord per path, face-crop summary per path or None)``; cropped clips go under ``workdir``."""
    from ifdd_bench.data.decode import count_video_frames, is_video, list_frames
    from ifdd_bench.data.records import ClipRecord

    detector = None
    records, faces = [], []
    for k, path in enumerate(paths):
        face = None
        if crop or (crop is None and is_video(path)):
            from ifdd_bench.data.faces import FaceDetector, crop_clip

            detector = detector or FaceDetector()
            result = crop_clip(path, workdir / f"clip{k}", crop_cfg, detector=detector)
            face = result.summary()
            path = result.out_dir
        n = len(list_frames(path)) if path.is_dir() else count_video_frames(path)
        records.append(ClipRecord(clip_id=str(k), source=path, label=0, num_frames=n))
        faces.append(face)
    return records, faces


@torch.inference_mode()
def predict(paths: Sequence[str | Path], *, checkpoint: str | Path, device: str = "auto",
            batch_size: int = 8, top: int | None = None, crop: bool | None = None,
            crop_config: Any = None) -> dict[str, Any]:
    """Class probabilities for each clip in ``paths``.

    Returns ``{"checkpoint", "model", "variant", "epoch", "classes", "predictions": [{"path",
    "label", "prob", "probs": {class: p}, "top": [(class, p), ...], "face"}]}``; multi-view
    checkpoints average the views' logits, as in evaluation. ``crop`` (None: video files only) and
    ``crop_config`` (a :class:`~ifdd_bench.data.faces.CropConfig`; default the datasets' crop) say
    which clips are face-cropped first; ``face`` is then the crop's summary (frames, frames
    examined, frames with the face), else None.
    """
    import tempfile

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"predict: batch_size must be an integer >= 1, got {batch_size!r}")
    paths = _check_paths(paths)
    dev, _ = resolve_device(device)
    model, ckpt = load_model(checkpoint, dev)
    with tempfile.TemporaryDirectory(prefix="ifdd-bench-faces-") as workdir:
        records, faces = _records(paths, crop, crop_config, Path(workdir))
        result = _classify(model, ckpt, records, dev, batch_size, top)
    for pred, path, face in zip(result["predictions"], paths, faces):
        pred["path"], pred["face"] = str(path), face
    return result


def _classify(model: torch.nn.Module, ckpt: dict, records: list, dev: torch.device, batch_size: int,
              top: int | None) -> dict[str, Any]:
    """Run the model over ``records`` read with the checkpoint's data config."""
    from ifdd_bench.data.dataset import ClipDataset, sampling_spec
    from ifdd_bench.data.transforms import ClipTransform, augment_spec

    classes = list(ckpt["classes"])
    data_cfg = from_dict(DataConfig, ckpt["data_config"], strict=False)
    dataset = ClipDataset(records, classes, sampling=sampling_spec(data_cfg),
                          transform=ClipTransform(augment_spec(data_cfg.train_aug, data_cfg.dataset), data_cfg.size,
                                                  train=False),
                          train=False, seed=0, size=data_cfg.size, split="test")
    out = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack(items).to(dev)  # (B, C, T, H, W) or (B, V, C, T, H, W)
        probs = torch.softmax(clip_logits(model, x), dim=-1).cpu()  # views averaged as in evaluation
        for j, p in enumerate(probs):
            ranked = sorted(zip(classes, p.tolist()), key=lambda kv: -kv[1])
            out.append({"path": str(dataset.records[start + j].source), "label": ranked[0][0], "prob": ranked[0][1],
                        "probs": dict(zip(classes, p.tolist())), "top": ranked[:top] if top else ranked})
    return {"checkpoint": ckpt["path"], "model": ckpt["model"], "variant": ckpt.get("variant"),
            "epoch": ckpt.get("epoch"), "protocol": ckpt.get("protocol"), "classes": classes, "predictions": out}
