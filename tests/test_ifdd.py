"""IFDD model family: parameter/FLOP parity with the reference, shapes, ISSM, LADM, losses, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from ifdd_bench import registry
from ifdd_bench.errors import CheckpointError, ConfigError
from ifdd_bench.models.ifdd import ABLATIONS, IFDD, ISSM, IFDDConfig, count_parameters, lifting_loss, sample_frames
from ifdd_bench.models.output import ModelOutput, unpack_output

# spec 10.2 / 14: sum(numel) at paper geometry, 16 frames, K=7
PAPER_PARAMS = {
    "full": 37_577_123,
    "no_lift": 37_577_123,
    "no_issm": 37_571_147,
    "no_issm_no_lift": 37_571_147,
    "no_ladm": 25_716_900,
    "baseline": 25_710_924,
    "gap": 25_710_727,
    "predict_first": 37_577_123,
    "aligned_grid": 37_577_123,
    "lift_mean": 37_577_123,
    "no_wavenorm": 37_577_123 - 2 * 1536,
}
REQUIRED_VARIANTS = {"full", "no_lift", "no_issm", "no_issm_no_lift", "no_ladm", "baseline", "gap",
                     "predict_first", "no_wavenorm", "aligned_grid", "lift_mean"}


def meta_model(name="ifdd", variant=None, **kwargs):
    """Shapes-only model: no memory, no initialisation cost."""
    with torch.device("meta"):
        return registry.create_model(name, variant, **kwargs)


def tiny(variant=None, seed=0, img_size=None, **overrides):
    torch.manual_seed(seed)
    return registry.create_model("ifdd_tiny", variant, img_size=img_size, overrides=overrides or None)


def clip(batch=2, frames=16, size=64, seed=1):
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# parity with the reference (spec 4.2, 10.2, 14, 16)


def test_ablation_table_names():
    assert REQUIRED_VARIANTS <= set(registry.ablations("ifdd")) == set(ABLATIONS)
    assert set(registry.ablations("ifdd_tiny")) == set(ABLATIONS)


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_parameter_parity_paper_geometry(variant):
    assert count_parameters(meta_model("ifdd", variant)) == PAPER_PARAMS[variant]


def test_parameter_parity_mafw_and_breakdown():
    assert count_parameters(meta_model("ifdd", frames=32, num_classes=11)) == 37_580_199
    m = meta_model("ifdd")
    parts = {name: count_parameters(getattr(m, name)) for name in ("embed", "backbone", "pyramid", "top", "head")}
    assert parts == {"embed": 42_432, "backbone": 23_451_072, "pyramid": 2_211_840, "top": 11_866_396,
                     "head": 5_383}
    assert count_parameters(m.top.split) == 5_976
    # the reference's dead members are kept for the count but frozen
    dead = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert dead == {"top.spatial_pos", "top.temporal_pos", "top.class_pos", "top.split.time_project.0.weight",
                    "top.split.time_project.0.bias", "top.split.time_project.2.weight", "top.split.time_project.2.bias"}
    lean = meta_model("ifdd", overrides={"parity_dead_params": False})
    assert count_parameters(lean) == 37_577_123 - 44_544 - 81


def test_shape_checklist_paper_geometry():
    """Spec 16.3, traced on the meta device (shapes only)."""
    m = meta_model("ifdd").eval()
    seen = {}
    m.embed.register_forward_hook(lambda mod, a, out: seen.__setitem__("embed", out.shape))
    m.backbone.register_forward_hook(lambda mod, a, out: seen.__setitem__("taps", [t.shape for t in out]))
    m.pyramid.register_forward_hook(lambda mod, a, out: seen.__setitem__("pyramid", out.shape))
    m.top.split.register_forward_hook(lambda mod, a, out: seen.__setitem__("groups", (out.approx.shape, out.detail.shape)))
    m.top.mlp.register_forward_hook(lambda mod, a, out: seen.__setitem__("ladm_tokens", out.shape))
    m.top.register_forward_hook(lambda mod, a, out: seen.__setitem__("top", (out.feature.shape, out.pool_a.shape)))
    logits = m(torch.empty(2, 3, 16, 224, 224, device="meta"))
    assert seen["embed"] == (2, 96, 8, 56, 56)
    assert seen["taps"] == [(2, 1569, 384), (2, 393, 768)]
    assert seen["pyramid"] == (2, 392, 768)
    assert seen["groups"] == ((2, 196, 768), (2, 196, 768))  # = B x 768 x 4 x 49 as tokens
    assert seen["ladm_tokens"] == (2, 196, 768)
    assert seen["top"] == ((2, 768), (2, 7, 7))
    assert logits.shape == (2, 7)
    mafw = meta_model("ifdd", frames=32, num_classes=11).eval()
    mafw.embed.register_forward_hook(lambda mod, a, out: seen.__setitem__("embed32", out.shape))
    assert mafw(torch.empty(1, 3, 32, 224, 224, device="meta")).shape == (1, 11)
    assert seen["embed32"] == (1, 96, 8, 56, 56)


@pytest.mark.slow
def test_flops_paper_geometry_match_reference():
    """fvcore MACs within 1% of 48.03 G and FlopCounterMode within 1% of 95.71 GFLOPs (batch 1)."""
    from ifdd_bench.engine.complexity import count_flops, count_macs

    torch.manual_seed(0)
    model = registry.create_model("ifdd")
    x = torch.rand(1, 3, 16, 224, 224)
    macs = count_macs(model, x)
    assert macs.total == pytest.approx(48.03e9, rel=0.01)
    assert macs.by_operator["scaled_dot_product_attention"] > 11e9  # attention is counted, not dropped
    flops = count_flops(model.to("meta"), torch.empty(1, 3, 16, 224, 224, device="meta"))
    assert flops.total == pytest.approx(95.71e9, rel=0.01)


# --------------------------------------------------------------------------------------------
# ISSM (spec 6) and the lazy split


def _zero_offsets(split: ISSM) -> None:
    with torch.no_grad():
        split.offset_a.weight.zero_()
        split.offset_d.weight.zero_()


def _grid_sample_oracle(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The authors' formulation: normalise i as 2i/(T'-1) - 1, bilinear grid_sample, align_corners=False, border."""
    B, t, hw, C = x.shape
    g = 2.0 * index / (t - 1) - 1.0  # (B, K)
    grid = F.pad(g[..., None, None], (1, 0), value=0.0)  # (B, K, 1, 2): x = 0, y = g
    img = x.permute(0, 2, 3, 1).reshape(B, hw * C, t, 1)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, hw*C, K, 1)
    return out.squeeze(-1).view(B, hw, C, -1).permute(0, 3, 1, 2)  # (B, K, hw, C)


def test_issm_zero_offsets_reference_positions():
    m = tiny()
    split = m.top.split
    _zero_offsets(split)
    x = torch.randn(2, 8, 4, 128)
    out = split(x)
    assert torch.allclose(out.extras["pos_a"][0], torch.tensor([0.0, 1.7857, 4.0714, 6.3571]), atol=1e-4)
    assert torch.allclose(out.extras["pos_d"][0], torch.tensor([0.6429, 2.9286, 5.2143, 7.0]), atol=1e-4)
    even, odd = torch.arange(0, 8, 2.0).expand(2, -1), torch.arange(1, 8, 2.0).expand(2, -1)
    assert torch.allclose(out.approx.view(2, 4, 4, 128), _grid_sample_oracle(x, even), atol=1e-5)
    assert torch.allclose(out.detail.view(2, 4, 4, 128), _grid_sample_oracle(x, odd), atol=1e-5)


def test_issm_aligned_grid_samples_integer_frames():
    m = tiny("aligned_grid")
    _zero_offsets(m.top.split)
    x = torch.randn(2, 8, 4, 128)
    out = m.top.split(x)
    assert torch.equal(out.extras["pos_a"][0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    assert torch.equal(out.approx, x[:, 0::2].reshape(2, -1, 128))
    assert torch.equal(out.detail, x[:, 1::2].reshape(2, -1, 128))


def test_issm_matches_grid_sample_with_learned_offsets():
    m = tiny(seed=3)
    split = m.top.split
    with torch.no_grad():  # large offsets so that positions are fractional and some clamp
        split.offset_a.weight.normal_(0, 3.0)
        split.offset_d.weight.normal_(0, 3.0)
    x = torch.randn(3, 8, 4, 128)
    out = split(x)
    sim = out.extras["similarity"]
    idx_a = split.even + 2 * torch.tanh(split.offset_a(sim.softmax(-1).flatten(1)))
    idx_d = split.odd + 2 * torch.tanh(split.offset_d((-sim).softmax(-1).flatten(1)))
    assert torch.allclose(out.approx.view(3, 4, 4, 128), _grid_sample_oracle(x, idx_a), atol=1e-5)
    assert torch.allclose(out.detail.view(3, 4, 4, 128), _grid_sample_oracle(x, idx_d), atol=1e-5)
    assert (out.extras["pos_d"] >= 0).all() and (out.extras["pos_d"] <= 7).all()


def test_issm_similarity_definition():
    m = tiny()
    split = m.top.split
    x = torch.randn(2, 8, 4, 128)
    phi = F.gelu(split.descriptor(x.view(16, 2, 2, 128).permute(0, 3, 1, 2))).reshape(2, 8, -1)
    assert torch.allclose(split(x).extras["similarity"], phi @ phi.transpose(1, 2) / 128, atol=1e-6)


def test_sample_frames_gradients_reach_positions():
    x = torch.randn(2, 8, 3, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[0.3, 2.5, 6.99], [1.2, 4.25, 5.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sample_frames, (x, pos))
    out = sample_frames(x, pos)
    out.sum().backward()
    lo = pos.detach().floor().long()
    expect = torch.stack([(x[b, lo[b] + 1] - x[b, lo[b]]).sum(-1) for b in range(2)]).detach()
    assert torch.allclose(pos.grad, expect)


def test_lazy_split_and_extras_per_variant():
    x = clip()
    expect = {
        "full": {"pos_a", "pos_d", "similarity", "detail", "pool_a"},
        "no_issm": {"pos_a", "pos_d", "detail", "pool_a"},
        "no_ladm": {"pos_a", "pos_d", "similarity", "detail", "pool_a"},
        "baseline": {"pos_a", "pos_d", "detail", "pool_a"},
        "gap": {"detail"},
    }
    for variant, keys in expect.items():
        model = tiny(variant).train()
        out = model(x)
        assert isinstance(out, ModelOutput) and set(out.extras) == keys, variant
        if "pos_a" in keys and variant in ("no_issm", "baseline"):
            assert torch.equal(out.extras["pos_a"][0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
            assert torch.equal(out.extras["pos_d"][1], torch.tensor([1.0, 3.0, 5.0, 7.0]))
        assert out.extras["detail"].shape == (2, 128) and not out.extras["detail"].requires_grad
        if "pool_a" in keys:
            assert out.extras["pool_a"].shape == (2, 2, 2)
        assert set(out.losses) == ({"lift"} if variant in ("full", "no_issm") else set())


# --------------------------------------------------------------------------------------------
# LADM and losses (spec 7, 9)


def test_lifting_loss_known_tensor():
    pool_a = torch.stack([torch.full((7, 7), 0.5), torch.full((7, 7), 2.0)])  # SmoothL1: 0.125 and 1.5
    assert lifting_loss(pool_a, 0.1, "sum").item() == pytest.approx(0.1 * (0.125 + 1.5))
    assert lifting_loss(pool_a, 0.1, "mean").item() == pytest.approx(0.1 * (0.125 + 1.5) / 2)
    # spec 16.5: for B = 2 the reference (sum) is twice the batch mean
    rnd = torch.randn(2, 7, 7)
    assert lifting_loss(rnd, 0.1, "sum").item() == pytest.approx(2 * lifting_loss(rnd, 0.1, "mean").item())


def test_model_lift_loss_uses_pool_a_and_weight():
    model = tiny(lambda_lift=0.3, lift_reduction="mean").train()
    out = model(clip())
    expect = lifting_loss(out.extras["pool_a"], 0.3, "mean")
    assert torch.allclose(out.losses["lift"], expect)


def test_pool_a_is_the_pair_average_minus_approximation():
    model = tiny("aligned_grid").train()
    _zero_offsets(model.top.split)
    seen = {}
    model.pyramid.register_forward_hook(lambda mod, a, out: seen.__setitem__("tokens", out))
    model.top.update.register_forward_hook(lambda mod, a, out: seen.__setitem__("a", a[0] + out))
    out = model(clip())
    tokens = seen["tokens"].view(2, 4, 2, 4, 128).mean(2)  # average of frame pairs (2k, 2k+1)
    expect = (tokens - seen["a"].view(2, 4, 4, 128)).mean(dim=(1, 3)).view(2, 2, 2)
    assert torch.allclose(out.extras["pool_a"], expect, atol=1e-6)


def test_update_first_vs_predict_first_differ_but_share_parameters():
    a, b = tiny("full"), tiny("predict_first")
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = clip()
    assert not torch.allclose(a(x), b(x))
    assert a.top.lift.__name__ == "_update_then_predict" and b.top.lift.__name__ == "_predict_then_update"


def test_predict_then_update_order_by_hand():
    model = tiny("predict_first", ladm_drop_path=0.0).eval()
    top = model.top
    a, d = torch.randn(2, 16, 128), torch.randn(2, 16, 128)
    new_a, new_d = top.lift(a, d)
    d_ref = d - top.predict(d, a)
    assert torch.allclose(new_d, d_ref) and torch.allclose(new_a, a + top.update(a, d_ref))


@pytest.mark.parametrize("variant", sorted(ABLATIONS))
def test_gradients_reach_every_trainable_parameter(variant):
    model = tiny(variant, img_size=32).train()  # stage grids 8, 4, 2, 1: same modules, 4x cheaper
    logits, losses, _ = unpack_output(model(clip(size=32)))
    (F.cross_entropy(logits, torch.tensor([1, 2])) + sum(losses.values())).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_eval_returns_deterministic_logits():
    model = tiny().eval()
    x = clip()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert isinstance(first, torch.Tensor) and first.shape == (2, 7)
    assert torch.equal(first, second)


def test_sdpa_and_explicit_models_agree():
    models = {impl: tiny(attn_impl=impl, drop_path=0.0, ladm_drop_path=0.0, head_dropout=0.0)
              for impl in ("sdpa", "explicit")}
    models["explicit"].load_state_dict(models["sdpa"].state_dict())
    x = clip()
    with torch.no_grad():
        assert torch.allclose(models["sdpa"].eval()(x), models["explicit"].eval()(x), atol=1e-5)
    grads = {}
    for impl, model in models.items():
        logits, losses, _ = unpack_output(model.train()(x))
        (logits.square().sum() + losses["lift"]).backward()
        grads[impl] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for name, g in grads["sdpa"].items():
        assert torch.allclose(g, grads["explicit"][name], atol=1e-5, rtol=1e-3), name


def test_tiny_preset_is_the_same_architecture():
    m = tiny()
    cfg = m.cfg
    assert cfg.taps == (2, 3) and cfg.issm and cfg.ladm and cfg.img_size == 64
    assert len(m.backbone.blocks) == 5 and len(m.pyramid.lateral) == 1
    assert isinstance(m.top.split, ISSM)
    assert [b.attn.q_thw for b in m.backbone.blocks] == [(8, 16, 16), (8, 8, 8), (8, 4, 4), (8, 4, 4), (8, 2, 2)]
    assert count_parameters(m) == 706_767


def test_input_norm_standardises_inside_the_embedding():
    """``kinetics`` equals feeding (x - 0.45) / 0.225 to the reference (``none``) model; no new state."""
    standardised = tiny(drop_path=0.0, ladm_drop_path=0.0)
    reference = tiny(input_norm="none", drop_path=0.0, ladm_drop_path=0.0)
    assert standardised.cfg.input_norm == "kinetics"  # the tiny preset trains from scratch
    assert registry.resolve_config("ifdd").input_norm == "none"  # paper geometry: reference input
    assert standardised.state_dict().keys() == reference.state_dict().keys()
    assert count_parameters(standardised) == count_parameters(reference)
    reference.load_state_dict(standardised.state_dict())
    x = clip()
    with torch.no_grad():
        ours = standardised.eval()(x)
        by_hand = reference.eval()((x - 0.45) / 0.225)
        raw = reference(x)
    assert torch.allclose(ours, by_hand, atol=1e-5)
    assert not torch.allclose(ours, raw, atol=1e-3)


# --------------------------------------------------------------------------------------------
# pretrained initialisation (spec 4.4)


def test_pretrained_k400_mapping(tmp_path):
    from torchvision.models.video import mvit_v2_s

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in mvit_v2_s().state_dict().items()}
    source = {k: torch.full(s, float(i % 97)) for i, (k, s) in enumerate(shapes.items())}
    path = tmp_path / "mvit_v2_s.pth"
    torch.save(source, path)
    model = registry.create_model("ifdd", overrides={"pretrained": str(path)})
    rep = model.pretrained_report
    assert len(rep.sha256) == 64 and not rep.mismatched
    assert set(rep.unexpected) == {k for k in shapes if k.startswith(("head.", *[f"blocks.{i}." for i in range(8, 14)]))}
    backbone_keys = {k for k in model.state_dict() if k.startswith(("backbone.", "embed."))}
    assert backbone_keys <= set(rep.matched)  # every backbone tensor came from the file
    assert not any(k.startswith(("backbone.", "embed.")) for k in rep.missing)
    assert torch.equal(model.backbone.blocks[8].attn.qkv.weight, source["blocks.14.attn.qkv.weight"])
    assert torch.equal(model.backbone.blocks[9].mlp[2].bias, source["blocks.15.mlp.3.bias"])
    assert torch.equal(model.embed.proj.weight, source["conv_proj.weight"])
    assert torch.equal(model.backbone.blocks[0].attn.pool_k.norm.weight, source["blocks.0.attn.pool_k.norm_act.0.weight"])
    with pytest.raises(CheckpointError, match="does not exist"):
        registry.create_model("ifdd_tiny", overrides={"pretrained": str(tmp_path / "missing.pth")})


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_input_shape_names_expected_shape():
    model = tiny().eval()
    with pytest.raises(ConfigError, match=r"expected \(B, 3, 16, 64, 64\)"):
        model(torch.rand(1, 3, 8, 64, 64))
    with pytest.raises(ConfigError, match="shape"):
        model(torch.rand(3, 16, 64, 64))


@pytest.mark.parametrize("overrides, match", [
    ({"frames": 12}, r"frames=12 .*allowed: 8, 16, 32"),
    ({"img_size": 100}, r"img_size=100 .*multiple of 32"),
    ({"ladm": False}, r"lambda_lift=0.1 needs the LADM top.*lambda_lift=0"),
    ({"top": "gap"}, r"top='gap' replaces LADM"),
    ({"top": "gap", "ladm": False, "lambda_lift": 0.0}, r"issm=True with top='gap'"),
    ({"top": "ladm", "ladm": False, "lambda_lift": 0.0}, r"top='ladm' contradicts ladm=False"),
    ({"issm_grid": "algned"}, r"issm_grid='algned'.*did you mean: aligned.*allowed: reference, aligned"),
    ({"attn_impl": "flash"}, r"attn_impl='flash'.*allowed: sdpa, explicit"),
    ({"lambda_lift": -1.0}, r"lambda_lift=-1.0"),
    ({"issm_range": 0.0}, r"issm_range=0.0"),
    ({"heads": (1, 2, 4, 7)}, r"stage 3: widths=768, depths=2, heads=7"),
    ({"taps": (1, 2)}, r"taps=\(1, 2\)"),
    ({"ladm_heads": 5}, r"ladm_heads=5"),
    ({"input_norm": "imagenet"}, r"input_norm='imagenet'.*allowed: none, kinetics"),
    ({"input_norm": "kinetics", "in_chans": 1}, r"input_norm='kinetics' has 3-channel statistics"),
])
def test_incompatible_configs_raise_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        registry.resolve_config("ifdd", overrides=overrides)


def test_unknown_key_and_variant_list_choices():
    with pytest.raises(ConfigError, match="unknown ifdd config key 'isssm'.*did you mean: issm"):
        registry.resolve_config("ifdd", overrides=["isssm=false"])
    with pytest.raises(ConfigError, match="unknown variant 'no_isssm'.*did you mean: no_issm.*valid: gap, baseline, .*full"):
        registry.resolve_config("ifdd", "no_isssm")
    cfg = registry.resolve_config("ifdd_tiny", "baseline", overrides=["issm_grid=aligned", "frames=32"])
    assert cfg.frames == 32 and not cfg.issm and cfg.top_kind == "split_only"
    assert isinstance(IFDD(IFDDConfig(**{**TINY_KW, "frames": 8})), IFDD)


TINY_KW = {"img_size": 64, "widths": (16, 32, 64, 128), "depths": (1, 1, 2, 1)}


@pytest.mark.parametrize("frames", [8, 32])
def test_other_frame_counts_run(frames):
    torch.manual_seed(0)
    model = registry.create_model("ifdd_tiny", frames=frames, num_classes=11).eval()
    assert model(clip(1, frames)).shape == (1, 11)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_autocast_and_compile(dtype):
    model = tiny().cuda().train()
    x = clip().cuda()
    with torch.autocast("cuda", dtype=dtype):
        logits, losses, _ = unpack_output(model(x))
        loss = logits.float().logsumexp(-1).mean() + sum(losses.values())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-4)
    assert math.isfinite(loss.item())
