"""SynthDFER: knobs, determinism, DFEW layout, label balance, where the label lives, context bias."""

from __future__ import annotations

import colorsys
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ifdd_bench.data.labels import DFEW_CLASSES
from ifdd_bench.data.synth import (
    EXPRESSION_PARAMS, class_counts, clip_folds, clip_labels, contact_sheet, ensure_dataset, generate,
    hue_bin, is_complete, load_truth, preset, render_clip_frames, sample_clip_params,
)
from ifdd_bench.data.synth import writer
from ifdd_bench.data.synth.config import DFEW_CLASS_TOTALS
from ifdd_bench.data.synth.probe import VIEWS, clip_views, fit_predict, parameter_probe
from ifdd_bench.errors import ConfigError, DataError

NEUTRAL = DFEW_CLASSES.index("neutral")
LISTS = Path("EmoLabel_DataSplit")


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    return generate(preset("smoke"), tmp_path_factory.mktemp("synth") / "smoke", workers=1)


def _read_list(path: Path) -> list[tuple[int, int]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["video_name", "label"]
    return [(int(a), int(b)) for a, b in rows[1:]]


# --------------------------------------------------------------------------------------------
# knobs


def test_presets_record_every_knob():
    smoke, default, hard = preset("smoke"), preset("default"), preset("hard")
    assert (smoke.clips, smoke.frames, smoke.size) == (70, 8, 32)
    assert (default.frames, default.size) == (16, 112) and 1000 <= default.clips <= 2000
    assert hard.context_bias > 0 and hard.expression_span[1] < default.expression_span[1]
    assert hard.distractor > default.distractor
    assert preset("smoke", seed=4, peak_intensity=[0.3, 0.6]).peak_intensity == (0.3, 0.6)


@pytest.mark.parametrize("overrides, needle", [
    ({"frames": 0}, r"'frames' must be in \[4, 256\]"),
    ({"size": 31}, r"'size' must be in \[32, 224\]"),
    ({"size": 225}, r"'size' must be in \[32, 224\]"),
    ({"talk_prob": 1.5}, r"'talk_prob' must be a probability in \[0.0, 1.0\]"),
    ({"context_bias": -0.1}, r"'context_bias' must be a probability"),
    ({"blink_rate": 2}, r"'blink_rate' must be a probability"),
    ({"occluder_prob": 1.01}, r"'occluder_prob' must be a probability"),
    ({"frames": 16.0}, r"'frames' must be an integer in \[4, 256\]"),
    ({"clips": "many"}, r"'clips' must be an integer"),
    ({"frames": True}, r"'frames' must be an integer"),
    ({"noise": "low"}, r"'noise' must be a number in \[0.0, 0.5\]"),
    ({"expression_span": (0.6, 0.2)}, r"'expression_span' must be a pair lo,hi"),
    ({"expression_span": 0.5}, r"'expression_span' must be a pair lo,hi"),
    ({"class_weights": "zipf"}, r"'class_weights' must be one of uniform, dfew"),
    ({"identities": 500}, r"'identities' must be in \[0, clips=70\]"),
    ({"jpeg_quality": 0}, r"'jpeg_quality' must be in \[1, 100\]"),
    ({"clips": 60_000, "context_bias": 0.5}, r"'clips' must be at most 49999 when context_bias > 0"),
    ({"frame": 8}, r"unknown SynthDFER knob 'frame' \(did you mean: frames"),
])
def test_impossible_knobs_name_the_knob_and_range(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        preset("smoke", **overrides)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown SynthDFER preset 'smok' \(did you mean: smoke\?\); valid: "
                                          r"default, hard, smoke"):
        preset("smok")


# --------------------------------------------------------------------------------------------
# labels, folds, determinism


@pytest.mark.parametrize("name", ["smoke", "default", "hard"])
def test_label_balance_per_preset(name):
    cfg = preset(name)
    labels, folds = clip_labels(cfg), clip_folds(cfg)
    counts = np.bincount(labels, minlength=7)
    assert counts.sum() == cfg.clips and counts.max() - counts.min() <= 1
    assert counts.tolist() == class_counts(cfg)
    per_fold = np.array([[np.sum((labels == k) & (folds == f)) for f in range(1, 6)] for k in range(7)])
    assert (per_fold.max(1) - per_fold.min(1) <= 1).all()  # stratified: each class spread evenly
    sizes = np.bincount(folds, minlength=6)[1:]
    assert sizes.max() - sizes.min() <= 1


def test_dfew_class_weights_follow_dfew():
    cfg = preset("default", class_weights="dfew")
    counts = np.array(class_counts(cfg))
    share = np.asarray(DFEW_CLASS_TOTALS) / sum(DFEW_CLASS_TOTALS)
    assert counts.sum() == cfg.clips
    assert np.abs(counts / cfg.clips - share).max() < 1.0 / cfg.clips + 1e-9
    assert counts[DFEW_CLASSES.index("disgust")] == counts.min() and counts.min() >= 1
    assert min(class_counts(preset("smoke", class_weights="dfew"))) >= 1  # tiny sets keep every class


def test_clip_is_a_pure_function_of_seed_index_and_knobs():
    cfg = preset("smoke", size=48)
    first, _ = render_clip_frames(cfg, 5)
    sample_clip_params(cfg, 9)  # other work in between must not matter
    second, _ = render_clip_frames(cfg, 5)
    assert first[0].shape == (8, 48, 48, 3) and first[0].dtype == np.uint8
    assert np.array_equal(first[0], second[0])
    other_seed, _ = render_clip_frames(preset("smoke", size=48, seed=1), 5)
    assert not np.array_equal(first[0], other_seed[0])
    # factor streams are separate: changing the dilution keeps identity, context and distractors
    a, b = sample_clip_params(cfg, 3), sample_clip_params(preset("smoke", size=48, expression_span=(0.9, 1.0)), 3)
    assert np.array_equal(a.identity.rest, b.identity.rest) and a.context.hue == b.context.hue
    assert np.array_equal(a.talking, b.talking) and not np.array_equal(a.intensity, b.intensity)
    c = sample_clip_params(preset("smoke", size=48, context_bias=1.0), 3)  # bias changes the biased hue only
    assert c.context.hue == a.context.hue and np.array_equal(c.context.objects, a.context.objects)
    assert c.context.biased and hue_bin(c.context.biased_hue) == c.label and np.array_equal(c.intensity, a.intensity)


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_layer_boxes_never_clip_a_shape(monkeypatch, gain):
    """Each layer is drawn only inside its bounding box; drawing on the full frame must change nothing."""
    from dataclasses import replace

    from ifdd_bench.data.synth import face

    cfg = preset("smoke", size=64, head_motion=3.0, occluder_prob=1.0, expression_gain=gain)
    patterns = [np.ones(7), -np.ones(7), np.array([1, -1, 1, -1, 1, -1, 1.0]), np.array([-1, 1, -1, 1, -1, 1, -1.0])]
    cases = []
    for index, pattern in zip(range(4, 20, 2), patterns * 2):
        params = sample_clip_params(cfg, index)
        cases.append(replace(params, expression=np.tile(pattern.astype(np.float32), (cfg.frames, 1))))
    boxed = [face.draw_foreground(p, 64) for p in cases]
    monkeypatch.setattr(face._Canvas, "_pixel_span", lambda self, values: (0, self.size))
    for p, (rgb, alpha) in zip(cases, boxed):
        full_rgb, full_alpha = face.draw_foreground(p, 64)
        assert np.array_equal(rgb, full_rgb) and np.array_equal(alpha, full_alpha)


def test_generation_is_independent_of_worker_count(smoke_root, tmp_path):
    other = generate(preset("smoke"), tmp_path / "two-workers", workers=2)
    frames = sorted(p.relative_to(smoke_root) for p in (smoke_root / "Clip").rglob("*.jpg"))
    assert frames == sorted(p.relative_to(other) for p in (other / "Clip").rglob("*.jpg"))
    assert all((smoke_root / p).read_bytes() == (other / p).read_bytes() for p in frames)
    for name in ["clips.csv", "synth.json", *[str(p.relative_to(smoke_root)) for p in (smoke_root / LISTS).rglob("*.csv")]]:
        assert (smoke_root / name).read_text() == (other / name).read_text(), name


# --------------------------------------------------------------------------------------------
# layout and ground truth


def test_dfew_layout_on_disk(smoke_root):
    cfg = preset("smoke")
    meta = json.loads((smoke_root / "synth.json").read_text())
    assert meta["config"]["clips"] == cfg.clips and meta["classes"] == list(DFEW_CLASSES)
    clip_dir = smoke_root / "Clip" / "clip_224x224_16f"
    folders = sorted(p.name for p in clip_dir.iterdir())
    assert folders == [f"{i:05d}" for i in range(1, cfg.clips + 1)]
    assert sorted(p.name for p in (clip_dir / "00001").iterdir()) == sorted(f"{t}.jpg" for t in range(1, 9))
    with Image.open(clip_dir / "00007" / "3.jpg") as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    labels = clip_labels(cfg)
    for fold in range(1, 6):
        train = _read_list(smoke_root / LISTS / "train(single-labeled)" / f"set_{fold}.csv")
        test = _read_list(smoke_root / LISTS / "test(single-labeled)" / f"set_{fold}.csv")
        assert len(train) + len(test) == cfg.clips and not {v for v, _ in train} & {v for v, _ in test}
        assert all(label == labels[vid - 1] + 1 for vid, label in train + test)  # 1-based on disk
        assert sorted({label for _, label in test}) == list(range(1, 8))  # stratified: every class tested


def test_layout_is_read_by_the_dfew_reader(smoke_root):
    readers = pytest.importorskip("ifdd_bench.data.readers")
    truth = load_truth(smoke_root)
    train = readers.read_split("synth", smoke_root, "train", 2, clip_len=8)
    tests = [readers.read_split("synth", smoke_root, "test", fold, clip_len=8) for fold in range(1, 6)]
    assert len(train) + len(tests[1]) == 70 and train.classes == DFEW_CLASSES
    assert {r.clip_id for t in tests for r in t.records} == {f"{i:05d}" for i in range(1, 71)}
    for fold, split in enumerate(tests, start=1):
        assert all(truth[r.clip_id].fold == fold for r in split.records)
    for rec in list(train.records) + [r for t in tests for r in t.records]:
        assert rec.num_frames == 8 and rec.label == truth[rec.clip_id].label


def test_ground_truth_round_trip(smoke_root):
    truth = load_truth(smoke_root)
    assert len(truth) == 70 and truth[1] is truth["00001"] is truth["1"]
    for row in truth.values():
        assert len(row.intensity) == 8 and 0 <= row.onset <= row.apex <= row.offset <= 7
        curve = np.array(row.intensity)
        assert (curve[: row.onset] == 0).all() and (curve[row.offset + 1:] == 0).all()
        if row.label == NEUTRAL:
            assert (curve == 0).all()
        else:
            assert curve.argmax() == row.apex and curve.max() == pytest.approx(row.peak, abs=1e-4)
    params = sample_clip_params(preset("smoke"), 11)
    assert truth[12].apex == params.apex and truth[12].label == params.label


def test_truth_reader_rejects_incomplete_roots(tmp_path):
    with pytest.raises(DataError, match="not a \\(complete\\) SynthDFER dataset"):
        load_truth(tmp_path)
    (tmp_path / "synth.json").write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        load_truth(tmp_path)


# --------------------------------------------------------------------------------------------
# where the label lives


def test_label_lives_in_the_change_not_in_a_single_frame():
    acc = {k: v["war"] for k, v in parameter_probe(preset("default", clips=1400)).items()}
    assert set(acc) == set(VIEWS)
    assert acc["random frame"] < 0.4 and acc["temporal average"] < 0.4, acc  # chance is 1/7 = 0.14
    assert acc["apex - rest frame"] > 0.9 and acc["largest change"] > 0.9, acc
    assert acc["apex frame"] < acc["apex - rest frame"] - 0.1, acc  # even the apex alone is ambiguous


def test_probe_classifier_learns_and_the_views_are_what_they_claim():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 3))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)  # 4 linearly separable classes
    assert (fit_predict(x[:500], y[:500], x[500:]) == y[500:]).mean() > 0.9
    cfg = preset("smoke", clips=20)
    views, labels = clip_views(cfg)
    first = sample_clip_params(cfg, 0)
    assert labels[0] == first.label and views["apex frame"].shape == (20, len(EXPRESSION_PARAMS))
    assert np.array_equal(views["apex frame"][0], first.expression[first.apex])
    assert np.allclose(views["temporal average"][0], first.expression.mean(0))


# --------------------------------------------------------------------------------------------
# context bias


def _border_hue(frame_path: Path) -> float:
    with Image.open(frame_path) as img:
        pix = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    border = np.concatenate([pix[0], pix[:, 0], pix[:, -1]])  # top row, left and right columns
    return colorsys.rgb_to_hsv(*np.median(border, axis=0))[0]


def test_context_bias_moves_only_the_train_split(tmp_path):
    cfg = preset("smoke", context_bias=1.0, size=40)
    root = generate(cfg, tmp_path / "biased", workers=1)
    truth = load_truth(root)
    assert len(truth) == 2 * cfg.clips
    train = {v for f in range(1, 6) for v, _ in _read_list(root / LISTS / "train(single-labeled)" / f"set_{f}.csv")}
    test = {v for f in range(1, 6) for v, _ in _read_list(root / LISTS / "test(single-labeled)" / f"set_{f}.csv")}
    assert train == set(range(cfg.clips + 1, 2 * cfg.clips + 1)) and test == set(range(1, cfg.clips + 1))

    def agreement(ids):
        frames = root / "Clip" / "clip_224x224_16f"
        return np.mean([hue_bin(_border_hue(frames / f"{i:05d}" / "1.jpg")) == truth[i].label for i in ids])

    assert agreement(train) > 0.8  # the shortcut is in the pixels of the train copies ...
    assert agreement(test) < 0.4  # ... and not in the test copies (chance: 1/7)
    # the two copies of a clip show the same person and dynamics: only the background differs
    (test_copy, train_copy), _ = render_clip_frames(cfg, 2)  # pixels before JPEG encoding
    assert np.array_equal(test_copy[:, 17:23, 17:23], train_copy[:, 17:23, 17:23])  # inside the face
    assert not np.array_equal(test_copy[:, :3], train_copy[:, :3])  # top rows: background
    copy = truth[cfg.clips + 3]
    assert (copy.source_clip, copy.apex, copy.role, truth[3].role) == (2, truth[3].apex, "train", "test")


# --------------------------------------------------------------------------------------------
# atomic writing and the cache


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    real = writer._write_chunk
    calls = []

    def dies_on_second_chunk(cfg, indices, root):
        calls.append(indices)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, indices, root)

    monkeypatch.setattr(writer, "_write_chunk", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        generate(preset("smoke"), tmp_path / "ds", workers=1)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary folder
    # a temp folder left by a killed process is removed by the next run, which completes
    stale = tmp_path / ".ds.tmp-999999999-abc123"
    (stale / "Clip").mkdir(parents=True)
    monkeypatch.setattr(writer, "_write_chunk", real)
    root = generate(preset("smoke"), tmp_path / "ds", workers=1)
    assert not stale.exists() and is_complete(root, preset("smoke")) and not is_complete(root, preset("smoke", seed=1))


def test_existing_output_is_not_overwritten_silently(smoke_root):
    before = (smoke_root / "clips.csv").read_text()
    with pytest.raises(DataError, match="already exists and is not empty"):
        generate(preset("smoke", seed=3), smoke_root, workers=1)
    assert (smoke_root / "clips.csv").read_text() == before


def test_ensure_dataset_generates_once_then_reuses(tmp_path, monkeypatch):
    seen = []
    first = ensure_dataset("smoke", cache_dir=tmp_path, workers=1, frames=4, progress=lambda d, t: seen.append((d, t)))
    assert first.parent == tmp_path and first.name.startswith("synthdfer-smoke-") and is_complete(first)
    assert seen[0] == (0, 70) and seen[-1] == (70, 70)
    monkeypatch.setattr(writer, "generate", lambda *a, **k: pytest.fail("regenerated a cached dataset"))
    assert ensure_dataset("smoke", cache_dir=tmp_path, frames=4) == first
    monkeypatch.setenv("IFDD_BENCH_CACHE", str(tmp_path / "env"))
    assert writer.default_cache_dir() == tmp_path / "env"


# --------------------------------------------------------------------------------------------
# preview and CLI


def test_contact_sheet_marks_apex_frames(tmp_path):
    cfg = preset("smoke")
    path = contact_sheet(cfg, tmp_path / "sheet.png", per_class=1)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[1] == 7 * (64 + 6 + 6)
        pix = np.asarray(img.convert("RGB")).reshape(-1, 3)
    assert ((pix == (230, 30, 30)).all(1)).sum() > 100  # red apex frames
    assert ((pix == (250, 210, 40)).all(1)).sum() > 100  # yellow intensity bars


def test_cli_synth_and_preview(tmp_path):
    from cli import main

    runner = CliRunner()
    out = tmp_path / "cli-smoke"
    res = runner.invoke(main, ["data", "synth", "--preset", "smoke", "--out-dir", str(out), "--set", "clips=14",
                               "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "14 clips (14 folders) x 8 frames x 32x32" in " ".join(res.output.split()) and is_complete(out, preset("smoke", clips=14))
    res = runner.invoke(main, ["data", "synth", "--preset", "smoke", "--out-dir", str(out), "-s", "frames=0"])
    assert res.exit_code == 2 and "'frames' must be in [4, 256]" in " ".join(res.output.split())
    res = runner.invoke(main, ["data", "preview", "--preset", "smoke", "--per-class", "1", "--out",
                               str(tmp_path / "p.png")])
    assert res.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 1000
    res = runner.invoke(main, ["data", "probe", "--preset", "smoke", "--clips", "140"])
    assert res.exit_code == 0 and "largest change" in res.output and "apex frame" in res.output
    assert sorted(os.listdir(tmp_path)) == ["cli-smoke", "p.png"]  # no temporary leftovers
