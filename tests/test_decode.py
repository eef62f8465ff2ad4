"""GPU JPEG decoding (data.decode_device=cuda): a clear refusal without CUDA, the CPU's pixels with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ifdd_bench.config import DataConfig
from ifdd_bench.data import build_datasets
from ifdd_bench.data.dataset import worker_context
from ifdd_bench.data.decode import check_decoder, list_frames, load_frames
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew
from ifdd_bench.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory) -> Path:
    return write_dfew(tmp_path_factory.mktemp("dfew"), balanced_dfew_rows(1, frames=8),
                      test=balanced_dfew_rows(1, frames=8, start=100), size=32)


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"dataset": "dfew", "data_root": str(root), "size": 16, "frames": 8, "segments": 8, **kw})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_decoding_without_cuda_is_refused_before_anything_is_read(dfew_root, tmp_path):
    with pytest.raises(DataError, match="decode_device=cuda .* needs a CUDA GPU") as err:
        build_datasets(cfg(dfew_root, decode_device="cuda", clip_cache=str(tmp_path / "cache")), seed=0,
                       protocol="reference")
    assert "decode_device=cpu" in err.value.hint
    assert not (tmp_path / "cache").exists()
    frames = list_frames(dfew_root / "Clip" / "clip_224x224_16f" / "00001")
    with pytest.raises(DataError, match="needs a CUDA GPU"):
        load_frames(frames, range(4), 16, "cuda")


def test_decode_device_and_decoder_names_are_checked(dfew_root):
    with pytest.raises(ConfigError, match="unknown data.decode_device 'gpu'.*valid: cpu, cuda"):
        build_datasets(cfg(dfew_root, decode_device="gpu"), seed=0, protocol="reference")
    with pytest.raises(DataError, match="unknown decoder 'nvjpeg'"):
        check_decoder("nvjpeg")


def test_gpu_decoding_workers_are_spawned_not_forked():
    class Clips:
        decoder = "cuda"

    assert worker_context(Clips(), 2) == "spawn" and worker_context(Clips(), 0) is None
    Clips.decoder = "auto"
    assert worker_context(Clips(), 2) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decoded_clips_match_the_cpu_decoded_ones(dfew_root, tmp_path):
    cpu = build_datasets(cfg(dfew_root, train_aug="none"), seed=0, protocol="reference")
    gpu = build_datasets(cfg(dfew_root, train_aug="none", decode_device="cuda"), seed=0, protocol="reference")
    assert gpu.info["decoder"] == "cuda"
    for i in range(len(cpu.test)):
        a, b = cpu.test[i][0], gpu.test[i][0]
        assert a.shape == b.shape and a.device.type == b.device.type == "cpu"
        assert (a - b).abs().mean() < 0.01 and (a - b).abs().max() < 0.1  # nvJPEG's IDCT differs from libjpeg's
    cached = build_datasets(cfg(dfew_root, train_aug="none", decode_device="cuda", clip_cache=str(tmp_path)),
                            seed=0, protocol="reference")
    assert torch.equal(cached.test[0][0], gpu.test[0][0])
    frame = dfew_root / "Clip" / "clip_224x224_16f" / "00001" / "3.jpg"
    frames = list_frames(frame.parent)
    good, _ = load_frames(frames, range(8), 16, "cuda")
    data = frame.read_bytes()
    try:
        frame.write_bytes(data[:200])  # truncated JPEG: the batch is retried frame by frame
        fixed, replaced = load_frames(frames, range(8), 16, "cuda")
    finally:
        frame.write_bytes(data)
    assert replaced == 1 and torch.equal(fixed[2], good[1])
