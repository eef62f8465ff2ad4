"""The disk-backed clip cache (data.clip_cache): same items as the uncached loader, reuse, rebuild on change."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from ifdd_bench.config import DataConfig
from ifdd_bench.data import build_datasets
from ifdd_bench.data import clipcache
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew, write_frames
from ifdd_bench.errors import DataError


@pytest.fixture()
def dfew_root(tmp_path) -> Path:
    return write_dfew(tmp_path / "dfew", balanced_dfew_rows(2, frames=10), test=balanced_dfew_rows(1, frames=12, start=100),
                      size=24)


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"dataset": "dfew", "data_root": str(root), "size": 16, "frames": 8, "segments": 8, **kw})


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith("lock"))


def test_cached_items_equal_the_uncached_loaders(dfew_root, tmp_path):
    plain = build_datasets(cfg(dfew_root), seed=0, protocol="unified", run_dir=tmp_path / "a")
    cached = build_datasets(cfg(dfew_root, clip_cache=str(tmp_path / "cache")), seed=0, protocol="unified",
                            run_dir=tmp_path / "b")
    files = cache_files(tmp_path / "cache")
    assert len(files) == 4 and {f.split("-")[1] for f in files} == {"train", "test"}  # data + index per split
    assert cached.info["cache_bytes"] == (14 * 10 + 7 * 12) * 3 * 16 * 16
    assert len(cached.info["clip_cache_files"]) == 2
    for epoch in (0, 3):
        for ds_plain, ds_cached in ((plain.train, cached.train), (plain.val, cached.val), (plain.test, cached.test)):
            ds_plain.set_epoch(epoch)
            ds_cached.set_epoch(epoch)
            for i in range(len(ds_plain)):
                assert torch.equal(ds_plain[i][0], ds_cached[i][0]), (epoch, i)
    # through a DataLoader worker process too (the map is opened in the worker)
    batch = next(iter(DataLoader(Subset(cached.train, range(4)), batch_size=4, num_workers=1)))[0]
    assert torch.equal(batch, torch.stack([plain.train[i][0] for i in range(4)]))


def test_a_second_run_maps_the_cache_and_a_changed_frame_rebuilds_it(dfew_root, tmp_path):
    folder = tmp_path / "cache"
    records = build_datasets(cfg(dfew_root), seed=0, protocol="reference").train.records
    first = clipcache.open_or_build(folder, "dfew", "train", records, 16)
    again = clipcache.open_or_build(folder, "dfew", "train", records, 16)
    assert first.built and not again.built and again.path == first.path
    before = again.get(records[0].source).clone()

    frame = sorted(Path(records[0].source).iterdir())[0]
    write_frames(frame.parent, 1, size=(24, 24), names=[frame.name], seed=7)  # new content, same name
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    rebuilt = clipcache.open_or_build(folder, "dfew", "train", records, 16)
    assert rebuilt.built and rebuilt.path != first.path and not first.path.exists()  # the stale cache is gone
    assert len(cache_files(folder)) == 2
    after = rebuilt.get(records[0].source)
    assert after.shape == before.shape == (10, 3, 16, 16) and not torch.equal(after, before)
    assert torch.equal(after[1:], before[1:])

    other_size = clipcache.open_or_build(folder, "dfew", "train", records, 12)
    assert other_size.built and len(cache_files(folder)) == 4  # another geometry is another cache


def test_workers_receive_the_path_not_the_frames(dfew_root, tmp_path):
    records = build_datasets(cfg(dfew_root), seed=0, protocol="reference").train.records
    cache = clipcache.open_or_build(tmp_path / "cache", "dfew", "train", records, 16)
    cache.get(records[0].source)  # maps the file
    blob = pickle.dumps(cache)
    assert len(blob) < cache.nbytes / 10
    assert torch.equal(pickle.loads(blob).get(records[3].source), cache.get(records[3].source))


def test_short_disk_is_refused_before_writing(dfew_root, tmp_path, monkeypatch):
    records = build_datasets(cfg(dfew_root), seed=0, protocol="reference").train.records
    monkeypatch.setattr(clipcache.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(DataError, match="needs about .* GiB, but .* has 0.0 GiB free"):
        clipcache.open_or_build(tmp_path / "cache", "dfew", "train", records, 16)
    assert cache_files(tmp_path / "cache") == []


def test_corrupt_frames_are_replaced_while_building_and_counted(dfew_root, tmp_path):
    frame = dfew_root / "Clip" / "clip_224x224_16f" / "00001" / "5.jpg"
    frame.write_bytes(frame.read_bytes()[:200])  # truncated JPEG
    bundle = build_datasets(cfg(dfew_root, clip_cache=str(tmp_path / "cache"), frames=10, segments=10,
                                train_aug="none"), seed=0, protocol="reference")
    assert bundle.info["corrupt_frames_replaced_in_cache"] == 1
    assert bundle.train.defect_counts() == {"corrupt_frames_replaced": 1}
    clip = bundle.train[0][0]
    assert torch.equal(clip[:, 4], clip[:, 3])  # frame 5 replaced by its nearest readable neighbour (4)
