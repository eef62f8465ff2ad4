"""`data bench`'s model side (ifdd_bench.engine.overhead): the model's step on a device against the loader."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ifdd_bench.engine.overhead import data_bench, feeding


def test_feeding_picks_the_fastest_loader_at_the_models_geometry():
    loader = [{"geometry": "16x64x64", "decoder": "pil", "workers": 0, "stored": 112, "clips_per_s": 40.0},
              {"geometry": "16x64x64", "decoder": "disk cache", "workers": 2, "stored": 112, "clips_per_s": 90.0},
              {"geometry": "16x224x224", "decoder": "pil", "workers": 0, "stored": 224, "clips_per_s": 500.0}]
    model = [{"model": "m", "geometry": "16x64x64", "device": "cpu", "precision": "fp32", "train_clips_per_s": 30.0},
             {"model": "n", "geometry": "8x32x32", "device": "cpu", "precision": "fp32", "train_clips_per_s": 3.0}]
    fast, missing = feeding(loader, model)
    assert fast["loader_clips_per_s"] == 90.0 and fast["loader_over_model"] == pytest.approx(3.0)
    assert fast["loader"] == "disk cache, 2 workers, 112px frames"
    assert missing["loader_over_model"] is None and "no loader row" in missing["loader"]


def test_data_bench_times_the_models_step_on_the_device_and_compares(tmp_path):
    result = data_bench(clips=7, workers=(0,), decoders=("pil",), model="ifdd_tiny", device="cpu", batch=2,
                        geometries=((16, 64),), decode=False)
    (step,) = result.model
    assert step["device"] == "cpu" and step["precision"] == "fp32" and step["geometry"] == "16x64x64"
    assert step["train_clips_per_s"] > 0
    kinds = {(r["decoder"], r["workers"]) for r in result.loader}
    assert kinds == {("pil", 0), ("cache", 0), ("disk cache", 0)}
    (feed,) = result.feed
    best = max(r["clips_per_s"] for r in result.loader)
    assert feed["loader_over_model"] == pytest.approx(best / step["train_clips_per_s"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device cuda requested but no CUDA GPU"),
    (["--decoders", "pil,cuda"], "needs a CUDA GPU"),
])
def test_data_bench_on_a_gpu_without_one_is_a_clear_error(args, message):
    from cli import main

    result = CliRunner().invoke(main, ["data", "bench", "--clips", "7", "--workers", "0", *args])
    assert result.exit_code == 2, result.output
    assert message.replace(" ", "") in result.output.replace(" ", "").replace("\n", "")
