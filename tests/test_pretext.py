"""The emotion-free pretext and its three objectives: clips, targets, pre-training loop and weight files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ifdd_bench import registry
from ifdd_bench.data.synth.dynamics import sample_clip_params
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.models.pretrained import BUILTIN_WEIGHTS, PRETEXT_FORMAT, load_pretrained
from ifdd_bench.data.synth.config import preset
from ifdd_bench.pretext.data import (NUISANCE_TARGET_NAMES, PRETEXT_SEED, TARGET_NAMES, clip_targets, nuisance_targets,
                                     pretext_synth_config, render_pretext_clips)
from ifdd_bench.pretext.train import PretextConfig, pretrain


class _Stop(Exception):
    pass


def test_pretext_clips_carry_no_emotion_but_faces_move():
    cfg = pretext_synth_config(40, size=32)
    motion = []
    for index in range(cfg.clips):
        params = sample_clip_params(cfg, index)
        assert not params.intensity.any() and not params.displacement.any()  # no emotion curve at all
        motion.append(np.ptp(params.expression, axis=0))  # (7,) range of every parameter over the clip
    assert np.mean(motion) > 0.3  # the face parts wander a lot more than in the benchmark
    with pytest.raises(ConfigError, match="pretext seed must be >= 1000"):
        pretext_synth_config(10, seed=0)


def test_unlabeled_pretext_clips_are_the_benchmark_distribution_under_another_seed():
    cfg = pretext_synth_config(40, size=32, source="unlabeled")
    bench = preset("default", clips=40, size=32)
    assert cfg.peak_intensity == bench.peak_intensity and cfg.distractor == bench.distractor
    assert cfg.seed == PRETEXT_SEED != bench.seed
    assert any(sample_clip_params(cfg, i).intensity.any() for i in range(4))  # expressions are shown
    with pytest.raises(ConfigError, match="pretext source must be one of emotion-free, unlabeled"):
        pretext_synth_config(10, source="labelled")


def test_clip_targets_average_frame_pairs_around_the_clip_mean():
    params = sample_clip_params(pretext_synth_config(16, size=32), 3)
    targets = clip_targets(params, token_frames=8)  # (8, 8)
    assert targets.shape == (8, len(TARGET_NAMES))
    centred = params.expression - params.expression.mean(0)
    np.testing.assert_allclose(targets[2, :7], centred[4:6].mean(0), atol=1e-6)
    np.testing.assert_allclose(targets[:, 7], params.blink.reshape(8, 2).mean(1), atol=1e-6)
    np.testing.assert_allclose(targets[:, :7].mean(0), 0.0, atol=1e-5)
    with pytest.raises(ConfigError, match="do not split into 5 token frames"):
        clip_targets(params, token_frames=5)


def test_nuisance_targets_read_pose_shake_light_blink_and_talking_but_no_expression():
    params = sample_clip_params(pretext_synth_config(16, size=32), 5)
    targets = nuisance_targets(params, token_frames=8)  # (8, 9)
    assert targets.shape == (8, len(NUISANCE_TARGET_NAMES))
    pose = params.pose - params.pose.mean(0)
    np.testing.assert_allclose(targets[3, :4], pose[6:8].mean(0), atol=1e-6)
    talking = params.talking - params.talking.mean()
    np.testing.assert_allclose(targets[:, 8], talking.reshape(8, 2).mean(1), atol=1e-6)
    # the expression parameters (the variables of a label) do not reach the targets at all
    new_expression = np.random.default_rng(0).uniform(-1, 1, params.expression.shape)
    other_face = dataclasses.replace(params, expression=new_expression)
    np.testing.assert_array_equal(nuisance_targets(other_face, 8), targets)
    assert not np.array_equal(clip_targets(other_face, 8), clip_targets(params, 8))


def test_rendering_is_the_same_for_any_worker_count():
    cfg = pretext_synth_config(10, size=40, frames=8)
    one, targets_one = render_pretext_clips(cfg, 32, 4, workers=1)
    two, targets_two = render_pretext_clips(cfg, 32, 4, workers=2)
    assert one.shape == (10, 8, 32, 32, 3) and one.dtype == torch.uint8
    assert torch.equal(one, two) and torch.equal(targets_one, targets_two)


def _tiny(**kw) -> PretextConfig:
    return PretextConfig(**{"clips": 16, "val_clips": 16, "epochs": 2, "batch_size": 8, "render_size": 64, **kw})


def test_pretrain_writes_backbone_weights_that_load_strictly(tmp_path):
    out = tmp_path / "w.pt"
    meta = pretrain(_tiny(), out, threads=1)
    assert not (tmp_path / "w.pt.state.pt").exists()  # the resumable state is removed at the end
    assert [h["epoch"] for h in meta["history"]] == [0, 1] and set(meta["history"][0]["val_r2"]) == {"pixels"}
    assert meta["objective"] == "masked-video" and "target_mean" not in meta  # nothing of the generator's parameters
    saved = torch.load(out, weights_only=True)
    assert saved["format"] == PRETEXT_FORMAT and all(k.startswith(("embed.", "backbone.")) for k in saved["state_dict"])

    model = registry.create_model("ifdd_tiny", "full", overrides={"pretrained": str(out)})
    fresh = registry.create_model("ifdd_tiny", "full")
    state = model.state_dict()
    for key, value in saved["state_dict"].items():
        assert torch.equal(state[key], value), key
    report = model.pretrained_report
    assert report.matched == sorted(saved["state_dict"]) and any(k.startswith("top.") for k in report.missing)
    assert state["head.fc.weight"].shape == fresh.state_dict()["head.fc.weight"].shape

    with pytest.raises(CheckpointError, match=r"another backbone \(widths: file \[16, 32, 64, 128\]"):
        registry.create_model("ifdd_tiny", "full", overrides={"pretrained": str(out), "widths": (16, 32, 64, 96)})
    with pytest.raises(ConfigError, match="already exists"):
        pretrain(_tiny(), out)


@pytest.mark.parametrize("objective", ["masked-video", "nuisance-motion", "expression-motion"])
def test_pretrain_resumes_after_an_interruption_to_the_same_weights(tmp_path, objective):
    whole = tmp_path / "whole.pt"
    pretrain(_tiny(objective=objective), whole, threads=1)

    cut = tmp_path / "cut.pt"

    def stop_after_first_epoch(event):
        if event["kind"] == "step" and event["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        pretrain(_tiny(objective=objective), cut, progress=stop_after_first_epoch, threads=1)
    assert (tmp_path / "cut.pt.state.pt").exists() and not cut.exists()
    events = []
    with pytest.raises(CheckpointError, match=r"other settings \(pretext.lr: 0.001 there vs 0.0005 now\)"):
        pretrain(_tiny(lr=5e-4, objective=objective), cut, threads=1)
    pretrain(_tiny(objective=objective), cut, progress=events.append, threads=1)
    assert {"kind": "resumed", "epoch": 1} in events
    a, b = torch.load(whole, weights_only=True), torch.load(cut, weights_only=True)
    if objective == "nuisance-motion":
        assert a["targets"] == list(NUISANCE_TARGET_NAMES)
        assert set(a["history"][0]["val_r2"]) == set(NUISANCE_TARGET_NAMES)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["history"][1]["val_mse"] == pytest.approx(b["history"][1]["val_mse"], rel=1e-6)


def test_pretext_config_rejects_impossible_values(tmp_path):
    with pytest.raises(ConfigError, match="pretext epochs must be an integer >= 1"):
        PretextConfig(epochs=0)
    with pytest.raises(ConfigError, match="pretext lr must be a positive"):
        PretextConfig(lr=0.0)
    with pytest.raises(ConfigError, match="objective must be one of masked-video, nuisance-motion, expression-motion"):
        PretextConfig(objective="labels")
    with pytest.raises(ConfigError, match="mask_ratio must be between 0 and 1"):
        PretextConfig(mask_ratio=1.0)
    with pytest.raises(ConfigError, match="only the masked-video objective"):
        PretextConfig(objective="nuisance-motion", source="unlabeled")
    with pytest.raises(ConfigError, match="for IFDD models"):
        pretrain(PretextConfig(model="c3d_tiny"), tmp_path / "sub" / "never.pt")
    assert not (tmp_path / "sub").exists()  # refused before anything is written
    (tmp_path / "plain").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match="cannot create the folder of --out"):
        pretrain(PretextConfig(), tmp_path / "plain" / "w.pt")


def test_shipped_weights_fit_ifdd_tiny():
    saved = torch.load(BUILTIN_WEIGHTS["synth-pretext"], weights_only=True)
    assert saved["model"] == "ifdd_tiny" and saved["pretext"]["data_seed"] >= 1000
    assert saved["history"][-1]["val_r2_mean"] > 0.5  # the backbone learnt the pretext, not noise
    model = registry.create_model("ifdd_tiny", "baseline", overrides={"pretrained": "synth-pretext"})
    assert model.pretrained_report.sha256 and len(model.pretrained_report.matched) == len(saved["state_dict"])


def test_pretrain_cli_writes_a_file_and_refuses_to_overwrite(tmp_path):
    from cli import main

    out = tmp_path / "cli.pt"
    args = ["run", "pretrain", "--out", str(out), "--clips", "16", "--val-clips", "16", "--epochs", "1", "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "held-out R² per target" in result.output and out.exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exists" in again.output and "Traceback" not in again.output


def test_k400_files_still_take_the_k400_path(tmp_path):
    model = registry.create_model("ifdd_tiny", "full")
    path = tmp_path / "k.pth"
    torch.save({"conv_proj.weight": model.state_dict()["embed.proj.weight"] * 0 + 1.0}, path)
    report = load_pretrained(model, path)
    assert report.matched == ["embed.proj.weight"] and torch.all(model.state_dict()["embed.proj.weight"] == 1.0)


def test_a_checkpoint_config_rebuilds_after_its_init_file_is_gone(tmp_path):
    out = tmp_path / "gone.pt"
    pretrain(_tiny(epochs=1), out, threads=1)
    cfg = registry.create_model("ifdd_tiny", "full", overrides={"pretrained": str(out)}).cfg
    out.unlink()
    as_dict = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    with pytest.raises(CheckpointError, match="does not exist"):
        registry.build_from_config("ifdd_tiny", as_dict)
    assert registry.build_for_checkpoint("ifdd_tiny", as_dict).cfg.pretrained is None


def test_default_ablation_trains_on_the_shipped_backbone_kept_frozen():
    from ifdd_bench.sweep import plan_sweep

    plan = plan_sweep()
    assert plan.model == "ifdd_tiny_frozen" and plan.model_overrides == ()
    saved = torch.load(BUILTIN_WEIGHTS["synth-pretext"], weights_only=True)["state_dict"]
    for variant in ("baseline", "full", "gap"):
        model = registry.create_model(plan.model, variant)
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())
        assert not any(p.requires_grad for k, p in model.named_parameters() if k in saved)
    scratch = registry.create_model("ifdd_tiny", "full").state_dict()
    assert not torch.equal(scratch["backbone.blocks.0.attn.qkv.weight"], saved["backbone.blocks.0.attn.qkv.weight"])


def test_a_sweep_whose_init_weights_do_not_fit_fails_once_before_any_cell(tmp_path):
    from ifdd_bench import sweep

    plan = sweep.plan_sweep(variants="baseline,full", overrides=["data.size=32"], runs_dir=str(tmp_path / "runs"),
                            results_dir=str(tmp_path / "res"))
    calls = []

    def runner(spec, progress=None, resume=True):
        calls.append(spec.run_id)
        return {}

    with pytest.raises(CheckpointError, match=r"img_size: file 64 vs model 32"):
        sweep.run_sweep(plan, runner=runner)
    assert calls == [] and not (tmp_path / "res" / "runs.csv").exists()
    fits = sweep.plan_sweep(variants="baseline", runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "res"))
    sweep.check_init_weights(fits.cells())  # 64 px: the shipped file fits, nothing raised


def test_the_run_record_names_the_shipped_weights_by_file_and_hash():
    """A config that names shipped weights by their builtin name ('synth-pretext') still gets the
    file and its SHA-256 in environment.json, as a path would."""
    from ifdd_bench.engine.environment import weight_files
    from ifdd_bench.hashing import sha256_file

    record = weight_files(registry.resolve_config("ifdd_tiny_pretext"))
    path = BUILTIN_WEIGHTS["synth-pretext"]
    assert record == {"pretrained": f"{path.resolve()} sha256:{sha256_file(path)}"}


def test_environment_record_keeps_what_loading_the_initial_weights_reported():
    import torch

    from ifdd_bench.engine.environment import environment_record
    from ifdd_bench.hashing import sha256_file

    model = registry.create_model("ifdd_tiny_pretext", "full")
    record = environment_record(device=torch.device("cpu"), seeds={"seed": 0},
                                model_cfg=model.cfg, weights_loaded=model.pretrained_report.as_dict())
    loaded = record["weights_loaded"]
    assert loaded["sha256"] == sha256_file(BUILTIN_WEIGHTS["synth-pretext"]) and loaded["kind"] == "ifdd_pretext"
    assert loaded["mapped"] > 0 and loaded["unexpected"] == [] and loaded["mismatched"] == []
    assert environment_record(device=torch.device("cpu"), seeds={})["weights_loaded"] is None
