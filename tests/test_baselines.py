"""Baselines: every registered baseline (and variant) trains a step, is deterministic in eval, and
rejects bad input with a clear ConfigError. Parametrised over the registry, so a new
registration in a ``baselines`` module is tested by being registered."""

from __future__ import annotations

import torch
import pytest

from ifdd_bench import registry
from ifdd_bench.errors import ConfigError
from ifdd_bench.models.output import unpack_output

NUM_CLASSES = 5
#: (frames, side) geometries tried in order; the first one a model accepts is its test input
TINY_GEOMETRIES = ((4, 32), (16, 32), (16, 64))


def _baseline_names() -> list[str]:
    return [n for n in registry.list_models() if registry.get_entry(n).build.__module__.startswith("baselines.")]


def _cases() -> list[tuple[str, str]]:
    return [(n, v) for n in _baseline_names() for v in registry.ablations(n)]


def _tiny(name: str, variant: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model built at the smallest geometry it accepts, and a batch of 2 clips for it."""
    errors = []
    for frames, side in TINY_GEOMETRIES:
        try:
            model = registry.create_model(name, variant, num_classes=NUM_CLASSES, frames=frames, img_size=side)
        except ConfigError as err:
            errors.append(str(err))
            continue
        return model, torch.rand(2, 3, frames, side, side, generator=torch.Generator().manual_seed(0))
    raise AssertionError(f"{name} accepts none of {TINY_GEOMETRIES}: {errors}")


def test_registry_holds_every_family():
    names = set(_baseline_names())
    expected = {"former_dfer", "former_dfer_tiny", "c3d", "r3d18_hara", "r3d18_hara_tiny", "r3d_18", "mc3_18",
                "r2plus1d_18", "resnet18_lstm", "timm_frames", "timm_frames_tiny", "timm_vit_tiny", "static_control"}
    assert expected <= names
    for name in names:  # every baseline config records the shape fields and says where weights come from
        cfg = registry.resolve_config(name)
        assert {"num_classes", "frames", "img_size"} <= set(vars(cfg))


@pytest.mark.parametrize("name,variant", _cases())
def test_train_step_and_eval(name, variant):
    torch.manual_seed(0)
    model, x = _tiny(name, variant)
    with torch.no_grad():  # timm zero-inits each residual block's last norm scale, which blocks the
        for pname, p in model.named_parameters():  # first step's gradient by design: open those gates
            if p.ndim == 1 and pname.endswith("weight") and not p.any():
                p.fill_(1.0)
    model.train()
    logits, losses, _ = unpack_output(model(x))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])) + sum(losses.values(), torch.zeros(()))
    loss.backward()
    starved = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0)]
    assert not starved, f"no (finite, non-zero) gradient reaches {starved[:6]}"

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert isinstance(first, torch.Tensor) and first.shape == (2, NUM_CLASSES)
    assert torch.equal(first, second)


def test_static_control_ignores_frame_order():
    """The control sees frames independently: shuffling time leaves its prediction unchanged."""
    model = registry.create_model("static_control", frames=6, img_size=32).eval()
    x = torch.rand(2, 3, 6, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x[:, :, torch.randperm(6)]), atol=1e-5)
    temporal = registry.create_model("former_dfer_tiny", frames=6, img_size=32).eval()
    with torch.no_grad():
        assert not torch.allclose(temporal(x), temporal(x.flip(2)), atol=1e-5)


# --------------------------------------------------------------------------------------------
# bad input


def test_unknown_timm_backbone_suggests_names():
    with pytest.raises(ConfigError, match=r"backbone='resnt18' is not a timm model \(did you mean: .*resnet18"):
        registry.create_model("timm_frames", overrides=["backbone=resnt18"])


@pytest.mark.parametrize("name,overrides,match", [
    ("c3d", {"frames": 8}, r"c3d: frames=8 is not supported; allowed: >= 16"),
    ("c3d_tiny", {"img_size": 8}, r"img_size=8 is not supported; allowed: >= 16"),
    ("timm_vit_tiny", {"img_size": 100}, r"img_size=100 .* multiples of its patch size 16"),
    ("timm_frames", {"head": "gru"}, r"head='gru' is not supported; allowed: mean, tformer, lstm"),
    ("timm_vit_tiny", {"channels": (16, 32, 64, 128)}, r"does not accept \['channels', 'stem_width'\]"),
    ("former_dfer", {"s_heads": 4}, r"s_heads \* s_dim_head must equal the stage-3 width 256"),
    ("r3d_18", {"arch": "r3d_50"}, r"arch='r3d_50' is not supported; allowed: r3d_18, mc3_18, r2plus1d_18"),
    ("static_control", {"normalize": "zscore"}, r"normalize='zscore' is not supported; allowed: auto, none"),
    ("static_control", {"pool": "max"}, r"pool='max' is not supported"),
])
def test_bad_config_is_a_clear_error(name, overrides, match):
    with pytest.raises(ConfigError, match=match):
        registry.create_model(name, overrides=overrides)


@pytest.mark.parametrize("name", ["former_dfer_tiny", "timm_frames_tiny", "c3d_tiny"])
def test_clip_of_other_geometry_is_a_clear_error(name):
    model = registry.create_model(name, frames=16, img_size=64).eval()
    with pytest.raises(ConfigError, match=r"input clip is 8x64x64 .* built for frames=16.*model.frames"):
        model(torch.rand(1, 3, 8, 64, 64))


def test_frame_models_accept_other_lengths():
    model = registry.create_model("resnet18_lstm_tiny", frames=16, img_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 5, 32, 32)).shape == (1, 7)
    with pytest.raises(ConfigError, match=r"expects a clip tensor \(B, C, T, H, W\)"):
        model(torch.rand(1, 3, 32, 32))


def test_former_dfer_faithful_protocol():
    from baselines.former_dfer import FAITHFUL_GAPS, faithful_protocol

    train, data = faithful_protocol()
    assert (train.optimizer, train.lr, train.momentum, train.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
    assert (train.epochs, train.batch_size, train.label_smoothing, train.mixup) == (100, 32, 0.0, False)
    assert train.selection == "test_war" and train.protocol == "reference"
    assert data.segments * data.segment_len == data.frames == 16 and data.segment_len == 2 and data.size == 112
    assert set(FAITHFUL_GAPS) == {"schedule", "train_aug"}
