"""Every registered model x every ablation variant: builds, gives finite (B, K) logits, and a
backward of the loss (classification + the model's auxiliary losses) reaches every trainable
parameter with a finite gradient.

Parametrised over the registry, so a new model or variant is tested by being registered. Models
that test modules register for their own purposes (``_test_dummy``, ``engine_test_net``,
``sweep_toy`` ...) are left out: only entries whose builder lives in ``ifdd_bench`` or
``baselines`` count, whatever test modules this worker imported first.

Paper-geometry models (``ifdd``, ``c3d``, ``r3d_18`` ...) accept a small input too (IFDD needs
an ``img_size`` multiple of ``8 * patch_stride`` = 32 and ``frames`` in 8 | 16 | 32), so all of them
run at 16x32x32, batch 2: the slowest case (paper ``ifdd``, build + forward + backward) takes about
1 s on one thread, the whole file about 20 s.
"""

from __future__ import annotations

import pytest
import torch

from ifdd_bench import registry
from ifdd_bench.models.output import unpack_output

NUM_CLASSES = 5
BATCH = 2
#: (frames, side) of every model's test input; 16 frames is IFDD's native embedding mode
#: (temporal stride 2) and C3D's minimum clip length
GEOMETRY = (16, 32)
#: models that only accept their native geometry
NATIVE = {
    # the shipped synth-pretext weights were trained at 16x64x64; the loader refuses any other
    # geometry (CheckpointError), which is the point of recording it
    "ifdd_tiny_pretext": (16, 64),
    "ifdd_tiny_frozen": (16, 64),
}

_IFDD_LADM_POS = {"top.spatial_pos", "top.temporal_pos", "top.class_pos"}
_IFDD_TIME_MLP = {"top.split.time_project.0.weight", "top.split.time_project.0.bias",
                  "top.split.time_project.2.weight", "top.split.time_project.2.bias"}
#: IFDD variant -> parameters that are frozen (requires_grad=False) and so expect no gradient.
#: They are the reference's dead parameters, kept only so parameter counts match the authors'
#: model (``parity_dead_params=True``, the default): LADM's unused position tables, and ISSM's time
#: MLP (built, never called). The split-only top also freezes ISSM's approximation offset head,
#: because only the detail group reaches the classifier there and no loss uses the approximation.
IFDD_FROZEN = {
    "full": _IFDD_LADM_POS | _IFDD_TIME_MLP,
    "no_lift": _IFDD_LADM_POS | _IFDD_TIME_MLP,
    "no_issm": _IFDD_LADM_POS,  # lazy split: no ISSM, so no time MLP
    "no_issm_no_lift": _IFDD_LADM_POS,
    "no_ladm": _IFDD_TIME_MLP | {"top.split.offset_a.weight"},  # split-only top: no LADM tables
    "baseline": set(),  # lazy split + split-only top: neither dead component exists
    "gap": set(),
    "predict_first": _IFDD_LADM_POS | _IFDD_TIME_MLP,
    "no_wavenorm": _IFDD_LADM_POS | _IFDD_TIME_MLP,
    "aligned_grid": _IFDD_LADM_POS | _IFDD_TIME_MLP,
    "lift_mean": _IFDD_LADM_POS | _IFDD_TIME_MLP,
}


def _cases() -> list[tuple[str, str]]:
    return [(n, v) for n in registry.library_models() for v in registry.ablations(n)]


def _expected_frozen(name: str, variant: str, model: torch.nn.Module) -> set[str]:
    if registry.get_entry(name).family == "ifdd":
        backbone = {n for n, _ in model.named_parameters() if n.startswith(("embed.", "backbone."))}
        return IFDD_FROZEN[variant] | (backbone if model.cfg.freeze_backbone else set())
    return set()  # baselines build every parameter trainable (no pretrained file is given here)


def test_cases_cover_the_library():
    names = set(registry.library_models())
    assert {"ifdd", "ifdd_tiny", "ifdd_tiny_pretext", "c3d", "former_dfer", "r3d_18", "timm_frames",
            "static_control"} <= names
    assert not any(n.startswith("_") or "test" in n or "toy" in n for n in names), names
    assert set(IFDD_FROZEN) == set(registry.ablations("ifdd")), "IFDD_FROZEN must name every IFDD variant"


@pytest.mark.parametrize("name,variant", _cases())
def test_forward_backward(name, variant):
    torch.manual_seed(0)
    frames, side = NATIVE.get(name, GEOMETRY)
    model = registry.create_model(name, variant, num_classes=NUM_CLASSES, frames=frames, img_size=side)
    x = torch.rand(BATCH, 3, frames, side, side, generator=torch.Generator().manual_seed(0))

    model.train()
    logits, losses, _ = unpack_output(model(x))
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    for key, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), f"auxiliary loss {key!r} = {value}"
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])) + sum(losses.values(), torch.zeros(()))
    loss.backward()

    params = dict(model.named_parameters())
    frozen = {n for n, p in params.items() if not p.requires_grad}
    assert frozen == _expected_frozen(name, variant, model)
    no_grad = sorted(n for n, p in params.items() if p.requires_grad and p.grad is None)
    assert not no_grad, f"{len(no_grad)} trainable parameter(s) get no gradient: {no_grad}"
    not_finite = sorted(n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all())
    assert not not_finite, f"non-finite gradient in {not_finite}"
    assert all(params[n].grad is None for n in frozen)

    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(out).all()
