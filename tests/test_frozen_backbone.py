"""IFDD with a frozen backbone (freeze_backbone) and the per-clip feature memo (train.feature_cache_mb)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

import test_engine_fixtures as fx
from ifdd_bench.config import train_hash
from ifdd_bench.engine.checkpoint import load_checkpoint
from ifdd_bench.engine.loop import fit
from ifdd_bench.engine.run import validate_spec
from ifdd_bench.errors import ConfigError
from ifdd_bench.models.memo import FeatureMemo, clip_key
from ifdd_bench.registry import create_model

FROZEN = {"freeze_backbone": True, "img_size": 32}


def _clips(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 32, 32, generator=torch.Generator().manual_seed(seed))  # (B, C, T, H, W)


def test_frozen_backbone_keeps_its_weights_and_eval_mode_while_the_top_trains():
    model = create_model("ifdd_tiny", "full", overrides=FROZEN)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.embed.training and not model.backbone.training and model.top.training
    assert not any(p.requires_grad for p in [*model.embed.parameters(), *model.backbone.parameters()])
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(_clips(4))
    (torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])) + sum(out.losses.values())).backward()
    optim.step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("embed.", "backbone."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])


def test_feature_memo_returns_the_extractor_outputs_and_reuses_them():
    model = create_model("ifdd_tiny", "baseline", overrides=FROZEN).eval()
    x = _clips(3)
    direct = model(x)
    model.enable_feature_memo(16)
    first, again = model(x), model(x)
    assert torch.allclose(first, direct, atol=1e-6) and torch.equal(first, again)
    assert (model.memo.misses, model.memo.hits) == (3, 3)
    changed = x.clone()
    changed[1, :, 0] = 0.0  # one frame of one clip differs: a new entry, not a stale hit
    assert clip_key(changed[1]) != clip_key(x[1])
    plain = create_model("ifdd_tiny", "baseline", overrides=FROZEN).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(model(changed), plain(changed), atol=1e-6)
    assert (model.memo.misses, model.memo.hits) == (4, 5)
    model.load_state_dict(model.state_dict())  # replaced weights: nothing stale survives
    assert not model.memo.entries and model.memo.bytes == 0


def test_feature_memo_stops_storing_at_its_budget_but_still_answers():
    calls = []

    def extract(x):
        calls.append(len(x))
        return [x.flatten(1)[:, :256].clone()]  # 1 KiB of float32 per clip

    memo = FeatureMemo(extract, budget_mb=2.5 / 1024)  # room for two clips
    x = _clips(3)
    out = memo(x)
    assert torch.equal(out[0], x.flatten(1)[:, :256])
    assert len(memo.entries) == 2 and memo.bytes == 2048
    memo(x)
    assert calls == [1] * 4  # one clip at a time; the third clip, not kept, is computed again
    with pytest.raises(ValueError, match="budget_mb"):
        FeatureMemo(extract, 0)


def test_memo_needs_a_frozen_backbone():
    with pytest.raises(ConfigError, match="freeze_backbone"):
        create_model("ifdd_tiny", "full", img_size=32).enable_feature_memo(8)
    with pytest.raises(ConfigError, match="freeze_backbone"):
        create_model("ifdd_tiny", "full", overrides={"freeze_backbone": "maybe"})


def test_tracing_bypasses_the_memo():
    model = create_model("ifdd_tiny", "baseline", overrides=FROZEN).eval()
    model.enable_feature_memo(16)
    x = _clips(2)
    traced = torch.jit.trace(model, x, check_trace=False)
    assert not model.memo.entries  # the trace ran the backbone, not the memo
    assert torch.allclose(traced(x), model(x), atol=1e-6)


class FixedClips(Dataset):
    """The same clips every epoch (no augmentation), as the embedded SynthDFER recipe feeds them."""

    def __init__(self, n: int, seed: int):
        self.x, self.labels = _clips(n, seed), [i % 3 for i in range(n)]
        self.records = [SimpleNamespace(clip_id=f"c{seed}-{i}") for i in range(n)]

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]


def _frozen_spec(runs_dir: Path, cache_mb: int):
    spec = fx.make_spec(runs_dir, epochs=2, batch_size=4, lr=1e-3, feature_cache_mb=cache_mb)
    return replace(spec, model="ifdd_tiny", variant="baseline", model_overrides=(("freeze_backbone", True),),
                   data=replace(spec.data, frames=16, size=32))


def test_a_run_with_the_memo_trains_the_same_weights_as_one_without(tmp_path):
    bundle = SimpleNamespace(train=FixedClips(8, 1), val=FixedClips(3, 2), test=FixedClips(3, 3),
                             classes=fx.CLASSES, info={"dataset": "memory"})
    specs = [_frozen_spec(tmp_path / f"m{mb}", mb) for mb in (0, 64)]
    assert train_hash(specs[0].train) == train_hash(specs[1].train)  # a speed option, not a protocol change
    done: list[list[dict]] = [[], []]
    rows = [fit(spec, bundle, progress=sink.append) for spec, sink in zip(specs, done)]
    events = [next(e for e in sink if e["kind"] == "done") for sink in done]
    assert rows[0]["uar"] == rows[1]["uar"]
    states = [load_checkpoint(Path(s.runs_dir) / s.run_id / "last.pt")["model_state"] for s in specs]
    for key, tensor in states[0].items():
        assert torch.allclose(tensor, states[1][key], atol=1e-6), key
    assert events[1]["feature_memo"]["hits"] > 0 and "feature_memo" not in events[0]


def test_feature_cache_mb_must_be_a_non_negative_integer(tmp_path):
    spec = _frozen_spec(tmp_path, -1)
    with pytest.raises(ConfigError, match="feature_cache_mb"):
        validate_spec(spec)
