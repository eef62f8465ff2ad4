"""Temporal-reliance probes: the perturbations as pure tensor functions, the probe pass on a model whose
prediction is the brightest frame (so every perturbation's effect is known by hand), the clip bootstrap
behind each Δ, and the names a user can ask for. The CLI and the refusals are in test_eval.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ifdd_bench.clipstats import paired_clip_intervals
from ifdd_bench.config import PERTURBATIONS, parse_perturbations
from ifdd_bench.engine import probes as P
from ifdd_bench.errors import ConfigError


def _clip(frames=6, views=None):
    """Frame t of every view holds the value 10 * view + t everywhere: (C=2, T, 3, 3) or (V, 2, T, 3, 3)."""
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1).expand(2, frames, 3, 3)
    if views is None:
        return t.clone()
    return torch.stack([t + 10 * v for v in range(views)])


def _order(clip):
    """The frame values along T (first channel, first pixel) of each view: [T] or [V][T]."""
    if clip.dim() == 4:
        return clip[0, :, 0, 0].tolist()
    return [view[0, :, 0, 0].tolist() for view in clip]


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_shuffle_is_a_seeded_permutation_other_than_the_identity_and_the_same_for_every_view():
    for seed in range(20):  # T = 2 has one non-identity order: it must always be found
        assert _order(P.shuffle(_clip(2), _gen(seed))) == [1.0, 0.0]
    out = P.shuffle(_clip(6), _gen(3))
    assert sorted(_order(out)) == list(range(6)) and _order(out) != list(range(6))
    assert _order(P.shuffle(_clip(6), _gen(3))) == _order(out)  # reproducible
    views = P.shuffle(_clip(6, views=3), _gen(3))
    assert views.shape == (3, 2, 6, 3, 3)
    assert [[v - 10 * k for v in row] for k, row in enumerate(_order(views))] == [_order(out)] * 3
    assert torch.equal(out[1], out[0])  # channels move together


def test_reverse_twice_is_the_identity():
    clip = _clip(5, views=2)
    assert _order(P.reverse(_clip(5))) == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert _order(P.reverse(clip)) == [[4.0, 3.0, 2.0, 1.0, 0.0], [14.0, 13.0, 12.0, 11.0, 10.0]]  # per view
    assert torch.equal(P.reverse(P.reverse(clip)), clip)


def test_single_and_freeze_repeat_one_frame():
    out = P.single(_clip(6, views=2), _gen(1))
    first, second = _order(out)
    assert len(set(first)) == 1 and [v - 10 for v in second] == first  # same position in both views
    frozen = P.freeze(_clip(6, views=3), torch.tensor([0, 4, 5]))  # one apex position per view
    assert _order(frozen) == [[0.0] * 6, [14.0] * 6, [25.0] * 6]
    assert _order(P.freeze(_clip(4), torch.tensor([2]))) == [2.0] * 4  # a single-view clip, its one position
    assert _order(P.freeze(_clip(4), 3)) == [3.0] * 4


def test_half_rate_keeps_every_second_frame_twice():
    assert _order(P.half_rate(_clip(6))) == [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]
    assert _order(P.half_rate(_clip(5))) == [0.0, 0.0, 2.0, 2.0, 4.0]
    assert _order(P.half_rate(_clip(2, views=2))) == [[0.0, 0.0], [10.0, 10.0]]


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_every_perturbation_refuses_a_one_frame_clip_and_keeps_the_shape(name):
    clip = _clip(4, views=2)
    assert P.perturb(name, clip, gen=_gen(), apex=torch.tensor([1, 2])).shape == clip.shape
    with pytest.raises(ConfigError, match="at least 2 frames"):
        P.perturb(name, _clip(1), gen=_gen(), apex=0)


def test_clip_generators_differ_by_clip_and_perturbation_and_repeat_exactly():
    draw = lambda *key: torch.randint(1000, (4,), generator=P.clip_generator(*key)).tolist()  # noqa: E731
    assert draw(0, "shuffle", 3) == draw(0, "shuffle", 3)
    assert draw(0, "shuffle", 3) != draw(0, "shuffle", 4) and draw(0, "shuffle", 3) != draw(0, "single", 3)
    assert draw(0, "shuffle", 3) != draw(1, "shuffle", 3)


def test_parse_perturbations():
    assert parse_perturbations("half-rate, shuffle") == ("shuffle", "half-rate")  # table order
    assert parse_perturbations("all") == PERTURBATIONS and parse_perturbations(None) == ()
    with pytest.raises(ConfigError, match=r"unknown perturbation 'shufle' \(did you mean: shuffle"):
        parse_perturbations("shufle,reverse")
    with pytest.raises(ConfigError, match="needs at least one perturbation"):
        parse_perturbations(" , ")


# ---------------------------------------------------------------------------------------------
# the probe pass on a model that predicts the position of the brightest frame


class BrightestFrame(nn.Module):
    """Logits (B, T): the mean of each frame, so the prediction is the brightest frame's position.
    Every input it sees is kept in ``seen`` (the probe pass calls it once per input and batch)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):  # (B, C, T, H, W)
        self.seen.append(x.clone())
        return x.mean(dim=(1, 3, 4))  # (B, T)


class PeakClips(Dataset):
    """Clip i: frame ``label_i`` bright (1.0), the others dim and rising slightly with t (no ties)."""

    def __init__(self, labels, frames, views):
        self.labels, self.frames, self.views = list(labels), frames, views

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        values = torch.linspace(0.0, 0.1, self.frames)
        values[self.labels[i]] = 1.0
        clip = values.view(1, self.frames, 1, 1).expand(3, self.frames, 2, 2).clone()  # (3, T, 2, 2)
        return (clip if self.views == 1 else torch.stack([clip] * self.views)), self.labels[i]


@pytest.mark.parametrize("views", [1, 2])
def test_probe_pass_scores_each_perturbation_of_the_same_clips(views):
    frames, batch = 4, 4
    labels = [0, 1, 2, 3, 3, 1, 2, 0, 1]
    data = PeakClips(labels, frames, views)
    apex = [torch.tensor([(i + v) % frames for v in range(views)]) for i in range(len(labels))]  # per clip and view
    model = BrightestFrame()
    out = P.probe_pass(model, DataLoader(data, batch_size=batch), PERTURBATIONS, device=torch.device("cpu"),
                       seed=7, apex=apex)
    y = np.array(labels)
    assert (out.labels == y).all() and (out.preds["clean"] == y).all()
    assert (out.preds["reverse"] == frames - 1 - y).all()
    # half-rate keeps frames 0, 0, 2, 2: an even peak stays, an odd one is dropped and the dim ramp's
    # brightest kept frame (2, first of the pair) wins
    assert (out.preds["half-rate"] == np.where(y % 2 == 0, y, 2)).all()
    for i, label in enumerate(labels):  # shuffle recomputed from the documented seeding
        perm = P.shuffle_permutation(frames, P.clip_generator(7, "shuffle", i))
        assert out.preds["shuffle"][i] == int((perm == label).nonzero())

    def seen(name, i):  # the input the model got for clip i under ``name``: (V, C, T, H, W)
        call = (i // batch) * (1 + len(PERTURBATIONS)) + (["clean", *PERTURBATIONS].index(name))
        return model.seen[call].view(-1, views, 3, frames, 2, 2)[i % batch]

    for i in range(len(labels)):
        clean = seen("clean", i)
        frozen = seen("freeze-apex", i)
        single = seen("single", i)
        position = int(torch.randint(frames, (1,), generator=P.clip_generator(7, "single", i)))
        for v in range(views):
            assert torch.equal(frozen[v], clean[v][:, [int(apex[i][v])] * frames])  # each view its own apex
            assert torch.equal(single[v], clean[v][:, [position] * frames])  # one position for all views
    rows = P.probe_rows(out, PERTURBATIONS, frames, {"run_id": "r"}, seed=7, n_resamples=500)
    by = {r["perturbation"]: r for r in rows}
    assert [r["perturbation"] for r in rows] == list(PERTURBATIONS)
    assert by["reverse"]["clean_uar"] == 1.0 and by["reverse"]["uar"] == 0.0 and by["reverse"]["delta_uar"] == -1.0
    assert by["half-rate"]["uar"] == pytest.approx(0.5) and by["half-rate"]["war"] == pytest.approx(4 / 9)
    for r in rows:
        assert r["run_id"] == "r" and r["clips"] == len(labels)
        assert r["delta_uar"] == pytest.approx(r["uar"] - r["clean_uar"])
        assert r["delta_war"] == pytest.approx(r["war"] - r["clean_war"])
        assert r["delta_uar_low"] <= r["delta_uar"] <= r["delta_uar_high"]


def test_paired_clip_intervals_match_the_metrics_and_do_not_depend_on_the_other_comparisons():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [10, 4, 6])  # unequal classes: UAR and WAR differ
    ref = rng.random(20) < 0.8
    others = rng.random((20, 2)) < 0.5

    def uar(correct):
        return np.mean([correct[labels == k].mean() for k in range(3)])

    both = paired_clip_intervals(labels, ref, others, n_resamples=2000, seed=3)
    for j in range(2):
        assert both["delta_uar"][j] == pytest.approx(uar(others[:, j]) - uar(ref))
        assert both["delta_war"][j] == pytest.approx(others[:, j].mean() - ref.mean())
        assert both["uar_low"][j] < both["delta_uar"][j] < both["uar_high"][j]
    alone = paired_clip_intervals(labels, ref, others[:, 1:], n_resamples=2000, seed=3)
    assert alone["uar_low"][0] == both["uar_low"][1] and alone["war_high"][0] == both["war_high"][1]
    same = paired_clip_intervals(labels, ref, ref[:, None], n_resamples=200)
    assert same["uar_low"][0] == same["uar_high"][0] == 0.0  # identical predictions: no difference in any draw


def test_every_perturbation_has_its_own_fixed_random_stream():
    from ifdd_bench.config import PERTURBATIONS

    assert set(P.PERTURBATION_STREAM) == set(PERTURBATIONS)
    assert len(set(P.PERTURBATION_STREAM.values())) == len(PERTURBATIONS)


def test_sweep_probe_options_that_cannot_work_are_refused_at_planning():
    from ifdd_bench.sweep import plan_sweep

    with pytest.raises(ConfigError, match="--no-probes turns the probes off"):
        plan_sweep("static_control", "full", probes=False, perturb="shufle")
    with pytest.raises(ConfigError, match="read 1 frame"):
        plan_sweep("static_control", "full", overrides=["frames=1"])
    assert plan_sweep("static_control", "full", overrides=["frames=1"], probes=False).probes == ()


def test_a_damaged_synthdfer_truth_is_reported_not_taken_for_a_real_dataset(tmp_path):
    from types import SimpleNamespace

    from ifdd_bench.config import DataConfig
    from ifdd_bench.data.synth.truth import META_FILE, TRUTH_FILE
    from ifdd_bench.engine.capture import synth_truth
    from ifdd_bench.errors import DataError

    bundle = SimpleNamespace(info={"root": str(tmp_path)})
    data = DataConfig(dataset="synth", data_root=str(tmp_path))
    assert synth_truth(bundle, data) is None  # no synth.json: a DFEW-layout folder, no apex known
    (tmp_path / META_FILE).write_text("{}")
    (tmp_path / TRUTH_FILE).write_text("clip,nothing\n00001,1\n")
    with pytest.raises(DataError):
        synth_truth(bundle, data)
