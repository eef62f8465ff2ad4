"""Capture where IFDD's ISSM put its slots on real or synthetic clips, for the slot visualiser.

The helpers say "slots" (ISSM's approximation / detail sampling slots) so that "split" keeps one
meaning in the code: the dataset split captured (``split="test"``). The command stays
``ifdd-bench viz splits`` and writes to ``results/splits/`` as before (users and committed files
depend on those names).

A trained IFDD checkpoint runs in eval mode over one split; forward hooks on the model's split
module (``model.top.split``: ISSM or the lazy split) and on the detail refinement self-attention
(``model.top.attn``) record, per clip:

* ``pos_a`` / ``pos_d`` (S,): the sampling coordinates on the T' temporal tokens of the
  approximation and detail groups (ISSM: lattice + offsets through the configured grid; lazy
  split: the even / odd tokens); ``grid_a`` / ``grid_d``: where ISSM would sample with zero
  offsets (the grid convention alone);
* ``similarity`` (T', T'): ISSM's inter-frame similarity ``S = phi phi^T / C`` (NaN for the lazy
  split, which computes none);
* ``detail_spatial`` (S, h, w): where the detail stream attends. With LADM: the attention each
  detail token *receives* in the detail refinement MHSA, averaged over heads and query tokens
  (sums to 1 over the S x h x w detail tokens). Without LADM (split-only top): the magnitude of the
  token-compression weights that pool the detail group for the head, normalised to sum to 1;

plus labels, predictions, the source frame each input frame shows, the input frames of the clips
to draw, and on SynthDFER the generator's ground truth (intensity per frame, onset/apex/offset).
:func:`save_capture` writes ``capture.npz`` (read by :mod:`ifdd_bench.reports.slots`, which
needs no torch) and a readable ``capture.csv``.

No change to the model is needed: the split module already returns its positions and similarity
in ``SplitOutput.extras`` in eval mode, and the attention is recomputed from the MHSA's input with
the module's own ``qkv`` weights.

Example::

    >>> cap = capture_slots("runs/ifdd_tiny-full-synth-f1-s0-unified", split="test")   # doctest: +SKIP
    >>> save_capture(cap, "viz/")                                                        # doctest: +SKIP

:func:`capture_to` does both for ``ifdd-bench viz splits``; :func:`capture_target` names its files.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ifdd_bench.atomic import atomic_path, write_text_atomic
from ifdd_bench.config import DataConfig, from_dict
from ifdd_bench.engine.checkpoint import load_model, resolve_checkpoint
from ifdd_bench.engine.distributed import resolve_device
from ifdd_bench.errors import CheckpointError, ConfigError, suggest
from ifdd_bench.events import Progress
from ifdd_bench.registry import get_entry

SPLITS = ("train", "val", "test")
IFDD_FAMILY = "ifdd"
#: clips whose frames are stored for figures when none are named
DEFAULT_STRIP_CLIPS = 4


@dataclass
class CaptureResult:
    """Arrays over the captured clips (keys as in :mod:`ifdd_bench.reports.slots`) and metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# checkpoint


def load_ifdd(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict, Path]:
    """Load an IFDD checkpoint (file or run folder) into an eval-mode model; other models, and IFDD
    variants whose top has no frame split, raise :class:`CheckpointError`.

    Returns ``(model, checkpoint dict, checkpoint path)``.
    """
    model, ckpt = load_model(path, device, accept=_require_ifdd)
    file = Path(ckpt["path"])
    if getattr(model.top, "split", None) is None:
        raise CheckpointError(f"{file} is IFDD variant {ckpt.get('variant')!r} whose top has no frame split "
                              f"(top={model.cfg.top_kind}); use a variant with ISSM or the lazy split")
    return model, ckpt, file


def _require_ifdd(ckpt: dict, file: Path) -> None:
    name = ckpt.get("model")
    try:
        entry = get_entry(str(name))
    except ConfigError:
        raise CheckpointError(f"{file} was written for model {name!r}, which is not registered here") from None
    if entry.family != IFDD_FAMILY:
        raise CheckpointError(f"{file} holds a {name!r} model (family {entry.family!r}); the split visualiser "
                              "needs an IFDD checkpoint (ifdd, ifdd_tiny)")


# --------------------------------------------------------------------------------------------
# hooks


class SlotRecorder:
    """Forward hooks that keep the split extras and the detail attention of each batch."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.top = model.top
        self.batch: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []
        self.attention_source = "ladm_mhsa" if hasattr(self.top, "attn") else "compress_weights"

    def __enter__(self) -> "SlotRecorder":
        self.handles.append(self.top.split.register_forward_hook(self._on_split))
        if self.attention_source == "ladm_mhsa":
            self.handles.append(self.top.attn.register_forward_pre_hook(self._on_attention))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _on_split(self, module: nn.Module, args: tuple, out: Any) -> None:
        for key in ("pos_a", "pos_d", "similarity"):
            if key in out.extras:
                self.batch[key] = out.extras[key].detach().float().cpu()

    def _on_attention(self, module: nn.Module, args: tuple) -> None:
        x = args[0]  # (B, N, C): LayerNorm'ed detail tokens entering the refinement MHSA
        B, N, C = x.shape
        h = module.heads
        q, k, _ = module.qkv(x).view(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)  # (B, h, N, d) each
        att = torch.softmax(q.float() @ k.float().transpose(-2, -1) / math.sqrt(C // h), dim=-1)  # (B, h, N, N)
        self.batch["received"] = att.mean(dim=(1, 2)).detach().cpu()  # (B, N): mass each key receives

    def detail_spatial(self, batch_size: int) -> torch.Tensor:
        """``(B, S, h, w)`` detail attention mass of the last batch (sums to 1 per clip)."""
        t, h, w = self.model.cfg.token_grid
        slots = t // 2
        if self.attention_source == "ladm_mhsa":
            mass = self.batch["received"]  # (B, S*h*w) in (slot, h, w) order
        else:
            weight = self.top.compress.weight.detach().abs().float().cpu()[0]  # (S*h*w,)
            mass = (weight / weight.sum().clamp_min(1e-12)).expand(batch_size, -1)
        return mass.reshape(batch_size, slots, h, w)


# --------------------------------------------------------------------------------------------
# data


def _seed_of(ckpt: dict, file: Path) -> int:
    """The run's seed (checkpoint, then the run folder's config.json, then the run id)."""
    seed = (ckpt.get("train_config") or {}).get("seed")
    config = file.parent / "config.json"
    if seed is None and config.is_file():
        try:
            seed = json.loads(config.read_text()).get("train_config", {}).get("seed")
        except (OSError, ValueError):
            seed = None
    if seed is None:
        match = re.search(r"-s(\d+)-", str(ckpt.get("run_id", "")))
        seed = int(match.group(1)) if match else 0
    return int(seed)


def _dataset_for(ckpt: dict, file: Path, split: str, data_root: str | None, progress: Progress | None):
    """The ClipDataset of ``split`` with evaluation sampling and transform, and the bundle info."""
    from ifdd_bench.data import ClipDataset, build_datasets

    if split not in SPLITS:
        raise ConfigError(f"--split: unknown split {split!r}{suggest(split, SPLITS)}; valid: {', '.join(SPLITS)}")
    cfg = from_dict(DataConfig, ckpt.get("data_config") or {}, strict=False)
    overrides: dict[str, Any] = {"eval_views": 1, "workers": 0, "cache_clips": False}
    if data_root is not None:
        overrides["data_root"] = str(data_root)
    from dataclasses import replace

    cfg = replace(cfg, **overrides)
    run_dir = file.parent if (file.parent / "config.json").is_file() else None
    bundle = build_datasets(cfg, seed=_seed_of(ckpt, file), protocol=str(ckpt.get("protocol", "unified")),
                            run_dir=run_dir, progress=progress)
    if split == "val" and bundle.val is None:
        raise ConfigError("--split val: this run's protocol has no validation split (reference protocol)")
    if split == "train":  # the training clips, but sampled and transformed as at evaluation
        ref = bundle.test
        ds = ClipDataset(bundle.train.records, bundle.classes, sampling=ref.sampling, transform=ref.transform,
                         train=False, seed=ref.seed, size=ref.size, split="train")
    else:
        ds = bundle.val if split == "val" else bundle.test
    return ds, cfg, bundle


def source_frames(record: Any) -> int:
    """Frames of a clip record on disk (its recorded count, else its frame files counted)."""
    if record.num_frames:
        return int(record.num_frames)
    from ifdd_bench.data.decode import list_frames

    return len(list_frames(record.source))


# --------------------------------------------------------------------------------------------
# capture


@torch.inference_mode()
def capture_slots(
    checkpoint: str | os.PathLike,
    *,
    split: str = "test",
    clips: Sequence[str] | None = None,
    limit: int | None = None,
    strip_clips: int = DEFAULT_STRIP_CLIPS,
    data_root: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    progress: Progress | None = None,
) -> CaptureResult:
    """Run an IFDD checkpoint over a dataset split and record where its split module put the slots.

    Every clip of ``split`` is captured (or the first ``limit``), so slot statistics cover the
    whole split; input frames are kept for the clips named in ``clips`` (unknown ids raise) or,
    without names, for the first ``strip_clips`` clips (on SynthDFER: clips with an expression).
    ``data_root`` replaces the dataset folder recorded in the checkpoint (moved data). ``device``:
    auto | cpu | cuda | cuda:N (:func:`~ifdd_bench.engine.distributed.resolve_device`).
    """
    device, _ = resolve_device(device)
    model, ckpt, file = load_ifdd(checkpoint, device)
    ds, data_cfg, bundle = _dataset_for(ckpt, file, split, data_root, progress)
    ids = [r.clip_id for r in ds.records]
    wanted = list(dict.fromkeys(c.strip() for c in (clips or ()) if c.strip()))
    for clip_id in wanted:
        if clip_id not in ids:
            raise ConfigError(f"--clips: clip {clip_id!r} is not in the {split} split of fold {data_cfg.fold}"
                              f"{suggest(clip_id, ids)}; it has {len(ids)} clips ({', '.join(ids[:5])}, ...)")
    order = list(range(len(ids)))
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        keep = set(order[:limit]) | {ids.index(c) for c in wanted}
        order = [i for i in order if i in keep]
    truth = synth_truth(bundle, data_cfg)
    if not wanted:
        with_expression = [i for i in order if truth is None or max(truth[ids[i]].intensity) > 0]
        wanted = [ids[i] for i in with_expression[:strip_clips]]

    t_tokens, h, w = model.cfg.token_grid
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("pos_a", "pos_d", "similarity", "detail_spatial",
                                                         "labels", "preds", "frame_index")}
    strips: dict[str, np.ndarray] = {}
    with SlotRecorder(model) as rec:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            items = [ds[i] for i in chunk]
            x = torch.stack([clip for clip, _ in items]).to(device)  # (B, C, T, H, W)
            logits = model(x)  # (B, K)
            B = x.shape[0]
            out["labels"].append(np.array([label for _, label in items]))
            out["preds"].append(logits.argmax(1).cpu().numpy())
            out["pos_a"].append(rec.batch["pos_a"].numpy())
            out["pos_d"].append(rec.batch["pos_d"].numpy())
            sim = rec.batch.get("similarity")
            out["similarity"].append(sim.numpy() if sim is not None else np.full((B, t_tokens, t_tokens), np.nan))
            out["detail_spatial"].append(rec.detail_spatial(B).numpy())
            out["frame_index"].append(np.array([ds.frame_indices(i, source_frames(ds.records[i]))[0] for i in chunk]))
            for b, i in enumerate(chunk):
                if ids[i] in wanted:
                    frames = (x[b].permute(1, 2, 3, 0).clamp(0, 1) * 255).round().to(torch.uint8)  # (T, H, W, 3)
                    strips[ids[i]] = frames.cpu().numpy()
            rec.batch.clear()
            if progress:
                progress({"kind": "capture", "done": min(start + batch_size, len(order)), "total": len(order)})

    arrays: dict[str, np.ndarray] = {k: np.concatenate(v) for k, v in out.items()}
    arrays["clip_ids"] = np.array([ids[i] for i in order])
    arrays["lazy_a"] = np.arange(0, t_tokens, 2, dtype=np.float64)
    arrays["lazy_d"] = np.arange(1, t_tokens, 2, dtype=np.float64)
    # where ISSM samples with zero offsets under the checkpoint's grid convention (reference grid:
    # 0, 1.786, 4.071, 6.357 / 0.643, 2.929, 5.214, 7): separates what training learned from the grid
    split_module = model.top.split
    for key, lattice in (("grid_a", arrays["lazy_a"]), ("grid_d", arrays["lazy_d"])):
        if hasattr(split_module, "positions"):
            arrays[key] = split_module.positions(torch.tensor(lattice, dtype=torch.float32)).double().cpu().numpy()
        else:
            arrays[key] = lattice.copy()
    if strips:
        arrays["strip_ids"] = np.array(wanted)
        arrays["strip"] = np.stack([strips[c] for c in wanted])
    if truth is not None:
        rows = [truth[ids[i]] for i in order]
        length = max(len(r.intensity) for r in rows)
        arrays["intensity"] = np.array([list(r.intensity) + [0.0] * (length - len(r.intensity)) for r in rows])
        for key in ("onset", "apex", "offset"):
            arrays[key] = np.array([getattr(r, key) for r in rows])
    cfg = model.cfg
    meta = {
        "checkpoint": str(file), "run_id": ckpt.get("run_id"), "model": ckpt.get("model"),
        "variant": ckpt.get("variant"), "epoch": ckpt.get("epoch"), "kind": ckpt.get("kind"),
        "dataset": data_cfg.dataset, "fold": data_cfg.fold, "split": split, "data_root": bundle.info.get("root"),
        "classes": list(bundle.classes), "frames": cfg.frames, "tokens": t_tokens, "token_grid": [t_tokens, h, w],
        "img_size": cfg.img_size, "split_module": "issm" if cfg.issm else "lazy", "grid": cfg.issm_grid,
        "issm_range": cfg.issm_range, "attention_source": rec.attention_source,
        "has_truth": truth is not None, "clips": len(order),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    return CaptureResult(arrays, meta)


def synth_truth(bundle: Any, data_cfg: DataConfig):
    """SynthDFER ground truth of the bundle's root, or None for real datasets."""
    if data_cfg.dataset != "synth":
        return None
    from ifdd_bench.data.synth import load_truth
    from ifdd_bench.data.synth.truth import META_FILE

    if not (Path(bundle.info["root"]) / META_FILE).is_file():
        return None  # a DFEW-layout folder passed as synth without the generator's truth
    return load_truth(bundle.info["root"])  # a generated folder with a damaged truth: its DataError


def save_capture(result: CaptureResult, out_dir: str | os.PathLike) -> Path:
    """Write ``capture.npz`` (arrays + meta JSON) and ``capture.csv`` (one row per clip) atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "capture.npz"
    with atomic_path(target, suffix=".npz") as tmp:  # .npz suffix: numpy would append one otherwise
        np.savez_compressed(tmp, meta=np.array(json.dumps(result.meta)), **result.arrays)
    a = result.arrays
    classes = result.meta.get("classes") or []
    lines = ["clip_id,label,pred,correct," + ",".join(f"pos_a{k}" for k in range(a["pos_a"].shape[1])) + ","
             + ",".join(f"pos_d{k}" for k in range(a["pos_d"].shape[1]))
             + (",onset,apex,offset" if "apex" in a else "")]
    for i, clip_id in enumerate(a["clip_ids"]):
        label, pred = int(a["labels"][i]), int(a["preds"][i])
        cells = [str(clip_id), classes[label] if label < len(classes) else str(label),
                 classes[pred] if pred < len(classes) else str(pred), str(int(label == pred))]
        cells += [f"{v:.4f}" for v in a["pos_a"][i]] + [f"{v:.4f}" for v in a["pos_d"][i]]
        if "apex" in a:
            cells += [str(int(a[k][i])) for k in ("onset", "apex", "offset")]
        lines.append(",".join(cells))
    csv_path = out / "capture.csv"
    write_text_atomic(csv_path, "\n".join(lines) + "\n")
    return target


def capture_target(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The checkpoint file of a run folder (``best.pt``, else ``last.pt``) or file, and the folder
    its capture goes to (``out_dir``, default ``<run folder>/splits``)."""
    file = resolve_checkpoint(checkpoint)
    return file, Path(out_dir) if out_dir else file.parent / "splits"


def capture_to(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, split: str = "test",
               clips: Sequence[str] | None = None, limit: int | None = None, data_root: str | None = None,
               batch_size: int = 16, device: str = "cpu", progress: Progress | None = None) -> Path:
    """:func:`capture_slots` of ``checkpoint`` saved to ``out_dir`` (:func:`save_capture`); returns
    the path of ``capture.npz``."""
    result = capture_slots(checkpoint, split=split, clips=clips, limit=limit, data_root=data_root,
                           batch_size=batch_size, device=device, progress=progress)
    return save_capture(result, out_dir)
