"""build_datasets / ClipDataset: shapes, hold-out, determinism across workers and resumes, cache, defects."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ifdd_bench.config import DataConfig
from ifdd_bench.data import build_datasets
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew, write_frames, write_mafw
from ifdd_bench.data.holdout import read_holdout, stratified_holdout
from ifdd_bench.data.labels import DFEW_CLASSES
from ifdd_bench.data.records import ClipRecord
from ifdd_bench.errors import DataError


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dfew")
    train = balanced_dfew_rows(3, frames=16) + [(900, 1, 6)]  # one short clip
    return write_dfew(root, train, test=balanced_dfew_rows(1, frames=20, start=100), size=24, label0=[950])


def cfg(root: Path, **kw) -> DataConfig:
    base = dict(dataset="dfew", data_root=str(root), size=16, frames=8, segments=8)
    base.update(kw)
    return DataConfig(**base)


def test_unified_bundle_shapes_holdout_and_info(dfew_root, tmp_path):
    bundle = build_datasets(cfg(dfew_root), seed=0, protocol="unified", run_dir=tmp_path)
    assert bundle.classes == DFEW_CLASSES and bundle.train.num_classes == 7
    assert len(bundle.train) + len(bundle.val) == 22 and len(bundle.test) == 7
    assert not {r.clip_id for r in bundle.train.records} & {r.clip_id for r in bundle.val.records}
    assert sorted(set(bundle.val.labels)) == list(range(7))  # stratified: every class held out once
    clip, label = bundle.train[0]
    assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.float32 and isinstance(label, int)
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    info = bundle.info
    assert info["val_split_file"] == str(tmp_path / "val_split.csv") and info["val_split"] == "drawn"
    assert info["counts"]["train"] == {"label0_skipped": 1, "short_clips": 1}
    assert info["frame_source"] == "16f" and info["sampling"]["kind"] == "segment"
    assert info["augmentation"]["crop_scale"] == [0.5, 1.0] or info["augmentation"]["crop_scale"] == (0.5, 1.0)
    with open(tmp_path / "val_split.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["split"] == "val" for r in rows) == len(bundle.val)

    again = build_datasets(cfg(dfew_root, val_fraction=0.5), seed=1, protocol="unified", run_dir=tmp_path)
    assert again.info["val_split"] == "read"  # the saved split wins over a new seed / fraction
    assert [r.clip_id for r in again.val.records] == [r.clip_id for r in bundle.val.records]


def test_saved_holdout_of_another_fold_is_refused(tmp_path):
    recs = [ClipRecord(f"{i:05d}", Path("."), i % 3, 16) for i in range(30)]
    train, val = stratified_holdout(recs, 0.2, seed=4)
    assert len(val) == 6 and [r.label for r in val].count(0) == 2
    path = tmp_path / "val_split.csv"
    path.write_text("clip_id,label,split\n" + "".join(f"{r.clip_id},{r.label},val\n" for r in val))
    with pytest.raises(DataError, match="does not match the training fold"):
        read_holdout(path, recs)


def test_reference_protocol_has_no_val_and_multi_view_eval(dfew_root):
    bundle = build_datasets(cfg(dfew_root, eval_views=3, sampling="consecutive", train_aug="reference"),
                            seed=0, protocol="reference")
    assert bundle.val is None
    views, _ = bundle.test[0]
    assert views.shape == (3, 3, 8, 16, 16)
    assert not torch.equal(views[0], views[2])  # 20-frame test clips: windows at 0, 6, 12
    assert bundle.train[0][0].shape == (3, 8, 16, 16)


def test_items_depend_on_seed_epoch_index_only_not_on_workers(dfew_root):
    bundle = build_datasets(cfg(dfew_root), seed=3, protocol="reference")
    train = bundle.train
    train.set_epoch(2)
    direct = torch.stack([train[i][0] for i in range(6)])
    loaded = next(iter(DataLoader(torch.utils.data.Subset(train, range(6)), batch_size=6, num_workers=2)))[0]
    assert torch.equal(direct, loaded)
    train.set_epoch(3)
    assert not torch.equal(direct, torch.stack([train[i][0] for i in range(6)]))
    train.set_epoch(2)
    assert torch.equal(direct, torch.stack([train[i][0] for i in range(6)]))  # resume at epoch 2
    test = bundle.test
    first = test[0][0]
    test.set_epoch(7)
    assert torch.equal(first, test[0][0])  # evaluation is deterministic


def test_cache_gives_the_same_items(dfew_root):
    plain = build_datasets(cfg(dfew_root), seed=0, protocol="reference")
    cached = build_datasets(cfg(dfew_root, cache_clips=True), seed=0, protocol="reference")
    assert cached.info["cache_bytes"] == (21 * 16 + 6 + 7 * 20) * 3 * 16 * 16
    for i in (0, 5, 21):
        assert torch.equal(plain.train[i][0], cached.train[i][0])
    assert torch.equal(plain.test[3][0], cached.test[3][0])


def test_corrupt_frames_are_replaced_and_counted_even_in_workers(tmp_path):
    root = write_dfew(tmp_path, balanced_dfew_rows(1, frames=16), test=balanced_dfew_rows(1, start=50), size=16)
    frame = root / "Clip" / "clip_224x224_16f" / "00001" / "5.jpg"
    frame.write_bytes(frame.read_bytes()[:200])  # truncated JPEG
    bundle = build_datasets(cfg(root, frames=16, segments=16, train_aug="none"), seed=0, protocol="reference")
    clip = bundle.train[0][0]
    assert torch.equal(clip[:, 4], clip[:, 3])  # frame 5 replaced by its nearest readable neighbour (4)
    assert bundle.train.defect_counts() == {"corrupt_frames_replaced": 1}
    list(DataLoader(torch.utils.data.Subset(bundle.train, [0]), batch_size=1, num_workers=1))
    assert bundle.train.defect_counts() == {"corrupt_frames_replaced": 2}
    for path in (root / "Clip" / "clip_224x224_16f" / "00002").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no frame of clip 00002 can be decoded"):
        bundle.train[1]


def test_frames_of_any_mode_and_size_become_rgb_at_the_configured_size(tmp_path):
    root = write_dfew(tmp_path, balanced_dfew_rows(1, frames=4), test=balanced_dfew_rows(1, frames=4, start=50),
                      size=16)
    clip_dir = root / "Clip" / "clip_224x224_16f"
    for path in (clip_dir / "00001").iterdir():
        path.unlink()
    write_frames(clip_dir / "00001", 2, size=(40, 30), ext=".png", mode="RGBA")
    write_frames(clip_dir / "00001", 2, size=(20, 20), names=["3.jpg", "4.jpg"], mode="L")
    for decoder_cfg in ({}, {"cache_clips": True}):
        bundle = build_datasets(cfg(root, frames=4, segments=4, size=12, train_aug="none", **decoder_cfg),
                                seed=0, protocol="reference")
        clip = bundle.train[0][0]
        assert clip.shape == (3, 4, 12, 12)
        gray = clip[:, 2]
        assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])  # L -> equal RGB channels


def test_mafw_consecutive_sampling_expands_from_the_end(tmp_path):
    root = write_mafw(tmp_path, [("anger", 5), ("fear", 40)], [("fear", 10)], size=(20, 16))
    data = DataConfig(dataset="mafw", data_root=str(root), size=16, frames=8, sampling="consecutive", frame_stride=2)
    bundle = build_datasets(data, seed=0, protocol="reference")
    assert bundle.info["sampling"]["expand_from"] == "end" and bundle.info["sampling"]["span"] == 15
    assert bundle.train.frame_indices(0, 5) == [[0, 0, 1, 2, 2, 3, 4, 4]]


def test_synth_without_root_uses_ensure_dataset(dfew_root, monkeypatch):
    import ifdd_bench.data.synth as synth

    calls = []
    monkeypatch.setattr(synth, "ensure_dataset", lambda name, **kw: calls.append(name) or dfew_root)
    bundle = build_datasets(replace(cfg(dfew_root), dataset="synth", data_root=None, synth_preset="smoke"),
                            seed=0, protocol="unified")
    assert calls == ["smoke"] and bundle.info["dataset"] == "synth" and bundle.classes == DFEW_CLASSES
    assert len(bundle.test) == 7
