"""Local pretrained weights: files made here from randomly initialised library models load into
the baselines (non-strict, key report, SHA-256), wrong files fail with the report, nothing downloads."""

from __future__ import annotations

import hashlib

import pytest
import timm
import torch
import torchvision

from baselines.weights import read_state_dict
from ifdd_bench import registry
from ifdd_bench.errors import CheckpointError


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    return state, _save(state, tmp_path_factory.mktemp("w") / "resnet18_tv.pth")


def test_torchvision_resnet18_into_former_dfer(tv_resnet18, caplog):
    state, path = tv_resnet18
    with caplog.at_level("INFO", logger="baselines.weights"):
        model = registry.create_model("former_dfer", overrides={"pretrained_path": path})
    assert torch.equal(model.cnn.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.cnn.bn1.running_var, state["bn1.running_var"])
    report = model.pretrained_report
    assert report.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert report.dropped == ["fc.weight", "fc.bias"] and not report.missing and not report.unexpected
    assert len(report.matched) == len(model.cnn.state_dict())
    assert report.as_dict()["sha256"] == report.sha256 and report.as_dict()["mapped"] == len(report.matched)
    assert "tensors match" in caplog.text  # the key report is logged
    assert type(model.norm).__name__ == "InputNorm"  # auto -> ImageNet statistics with pretrained weights


def test_wrapped_and_prefixed_timm_keys(tmp_path):
    """timm key style, a training-script container, a DataParallel and a 'backbone.' prefix."""
    torch.manual_seed(2)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.backbone.{k}": v for k, v in state.items()}}
    model = registry.create_model("resnet18_lstm", overrides={"pretrained_path": _save(wrapped, tmp_path / "c.pth")})
    assert torch.equal(model.cnn.layer4[0].downsample[0].weight, state["layer4.0.downsample.0.weight"])
    assert model.pretrained_report.prefix == "backbone."


def test_wrong_architecture_shows_key_report(tmp_path):
    path = _save(torchvision.models.video.r3d_18(weights=None).state_dict(), tmp_path / "r3d.pth")
    with pytest.raises(CheckpointError, match=r"does not fit former_dfer's ResNet-18(.|\n)*missing: conv1.weight"):
        registry.create_model("former_dfer", overrides={"pretrained_path": path})
    narrow = _save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch: conv1.weight: file \(64, 3, 7, 7\) vs model \(16, 3, 7, 7\)"):
        registry.create_model("static_control", overrides={"pretrained_path": narrow})


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"pretrained_path='.*nope.pth': no such file.*never downloaded"):
        registry.create_model("r3d18_hara_tiny", overrides={"pretrained_path": str(tmp_path / "nope.pth")})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable weight file"):
        read_state_dict(junk)


def test_torchvision_video_k400_style(tmp_path):
    torch.manual_seed(3)
    state = torchvision.models.video.r2plus1d_18(weights=None).state_dict()  # 400-way fc, as K400 files
    model = registry.create_model("r2plus1d_18", overrides={"pretrained_path": _save(state, tmp_path / "k.pth")})
    assert torch.equal(model.net.layer2[0].conv1[0][0].weight, state["layer2.0.conv1.0.0.weight"])
    assert model.net.fc.out_features == 7 and model.pretrained_report.dropped == ["fc.weight", "fc.bias"]
    with pytest.raises(CheckpointError, match="does not fit torchvision r3d_18"):
        registry.create_model("r3d_18", overrides={"pretrained_path": str(tmp_path / "k.pth")})


def test_hara_and_c3d_round_trip(tmp_path):
    for name in ("r3d18_hara_tiny", "c3d_tiny"):
        source = registry.create_model(name, num_classes=3)
        path = _save(source.state_dict(), tmp_path / f"{name}.pth")
        target = registry.create_model(name, overrides={"pretrained_path": path})
        same = [torch.equal(a, b) for (k, a), b in zip(source.state_dict().items(), target.state_dict().values())
                if not (k.startswith("fc.") or k.startswith("fc8."))]
        assert all(same) and target.pretrained_report.dropped


def test_timm_checkpoint_via_overlay(tmp_path):
    torch.manual_seed(4)
    state = timm.create_model("resnet18", pretrained=False, num_classes=1000).state_dict()
    model = registry.create_model("timm_frames", overrides={"pretrained_path": _save(state, tmp_path / "r18.pth")})
    assert torch.equal(model.backbone.layer2[1].conv1.weight, state["layer2.1.conv1.weight"])
    assert model.pretrained_report.kind == "timm" and model.pretrained_report.dropped == ["fc.weight", "fc.bias"]


def test_timm_vit_224_checkpoint_resampled_to_112(tmp_path):
    torch.manual_seed(5)
    state = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    path = _save(state, tmp_path / "vit.pth")
    model = registry.create_model("timm_vit_tiny", overrides={"pretrained_path": path})
    assert model.pretrained_report.adapted == ["pos_embed"]
    assert model.backbone.pos_embed.shape == (1, 50, 192)
    assert torch.equal(model.backbone.blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    wrong = _save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"does not fit timm vit_tiny_patch16_224(.|\n)*unexpected: conv1.weight"):
        registry.create_model("timm_vit_tiny", overrides={"pretrained_path": wrong})
