"""Split visualiser: statistics and figures from a capture archive, and capture on a tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ifdd_bench.errors import BenchError, DataError
from ifdd_bench.reports import splits

CLASSES = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]


def make_capture(path: Path, *, n: int = 10, pos_d=(4.0, 5.0, 5.0, 5.0), pos_a=(0.0, 1.0, 2.0, 3.0),
                 neutral: int = 1, strip: bool = True) -> Path:
    """A capture whose expression tokens are 4 and 5 (frames 8-11) in every non-neutral clip."""
    frames, tokens = 16, 8
    intensity = np.zeros((n, frames))
    intensity[:, 8:12] = [0.6, 0.9, 1.0, 0.7]  # tokens 4 (0.75) and 5 (0.85); token 6 = 0
    intensity[:neutral] = 0.0
    rng = np.random.default_rng(0)
    arrays = dict(
        clip_ids=np.array([f"{i:05d}" for i in range(n)]), labels=np.arange(n) % 7, preds=np.arange(n) % 7,
        pos_a=np.tile(pos_a, (n, 1)), pos_d=np.tile(pos_d, (n, 1)),
        similarity=rng.normal(size=(n, tokens, tokens)),
        detail_token_mass=np.tile(np.eye(tokens)[5], (n, 1)),  # all attention on token 5
        detail_spatial=rng.random((n, 4, 7, 7)), frame_index=np.tile(np.arange(frames), (n, 1)),
        lazy_a=np.array([0.0, 2, 4, 6]), lazy_d=np.array([1.0, 3, 5, 7]), intensity=intensity,
        onset=np.full(n, 8), apex=np.full(n, 10), offset=np.full(n, 11),
        meta=json.dumps({"model": "ifdd_tiny", "variant": "full", "classes": CLASSES, "dataset": "synth",
                         "split": "test"}),
    )
    if strip:
        arrays["strip_ids"] = np.array(["00001", "00002"])
        arrays["strip"] = (rng.random((2, frames, 24, 24, 3)) * 255).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def _stat(stats, group, quantity="expression share"):
    row = stats[(stats["group"] == group) & (stats["quantity"] == quantity)]
    assert len(row) == 1, (group, quantity)
    return row.iloc[0]


def test_token_weights_interpolate_between_neighbours():
    w = splits.token_weights(np.array([[4.25, 7.0, -0.3, 2.0]]), 8)[0]
    assert w.shape == (4, 8) and np.allclose(w.sum(axis=1), 1)
    assert w[0, 4] == pytest.approx(0.75) and w[0, 5] == pytest.approx(0.25)
    assert w[1, 7] == 1 and w[2, 0] == 1 and w[3, 2] == 1


def test_split_statistics_known_answer(tmp_path):
    cap = splits.load_capture(make_capture(tmp_path / "c.npz"))
    stats = splits.split_statistics(cap, n_boot=500)
    assert stats.attrs["clips"] == 9 and stats.attrs["neutral_clips"] == 1
    assert _stat(stats, "ISSM detail group")["estimate"] == pytest.approx(1.0)  # slots on tokens 4, 5
    assert _stat(stats, "lazy odd split (detail)")["estimate"] == pytest.approx(0.25)  # only token 5 of 1,3,5,7
    assert _stat(stats, "lazy even split (approximation)")["estimate"] == pytest.approx(0.25)  # token 4
    assert _stat(stats, "ISSM approximation group")["estimate"] == pytest.approx(0.0)
    assert _stat(stats, "uniform slot (chance)")["estimate"] == pytest.approx(2 / 8)
    diff = _stat(stats, "ISSM detail - lazy odd (paired)", "expression share difference")
    assert diff["estimate"] == pytest.approx(0.75) and diff["p_value"] == pytest.approx(2 / 2 ** 9)
    beats = _stat(stats, "ISSM detail group", "clips where detail share > lazy odd")
    assert beats["estimate"] == 1.0 and 0.6 < beats["ci_low"] < 1.0 and beats["ci_high"] == 1.0
    attention = _stat(stats, "detail stream", "detail attention on expression tokens")
    assert attention["estimate"] == pytest.approx(1.0)
    md = splits.statistics_markdown(stats, cap.meta)
    assert "| expression share | ISSM detail group | 100.0% |" in md and "+75.0%" in md


def test_fractional_positions_count_by_weight(tmp_path):
    # slots half-way between token 3 (no expression) and token 4 (expression): half their weight counts
    cap = splits.load_capture(make_capture(tmp_path / "c.npz", pos_d=(3.5, 3.5, 3.5, 3.5), neutral=0))
    stats = splits.split_statistics(cap, n_boot=200)
    assert _stat(stats, "ISSM detail group")["estimate"] == pytest.approx(0.5)
    apex = _stat(stats, "ISSM detail group", "apex token hit (a detail slot's nearest token)")
    assert apex["estimate"] == 0.0  # rint(3.5) = 4, the apex (frame 10) is token 5


def test_render_writes_figures_and_tables(tmp_path):
    out = splits.render_splits(make_capture(tmp_path / "c.npz"), tmp_path / "viz")
    names = {p.name for p in out["files"]}
    assert {"split_00001.png", "split_00001.pdf", "split_00002.png", "split_positions.png",
            "split_stats.csv", "split_stats.md"} <= names
    for p in out["files"]:
        assert p.stat().st_size > 1000 or p.suffix in (".csv", ".md")
    assert (tmp_path / "viz" / "split_00001.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_capture_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        splits.load_capture(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read"):
        splits.load_capture(tmp_path / "junk.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not an ifdd-bench split capture"):
        splits.load_capture(tmp_path / "foreign.npz")
    cap = splits.load_capture(make_capture(tmp_path / "c.npz", neutral=10))
    with pytest.raises(DataError, match="no clip with an expression"):
        splits.split_statistics(cap)
    with pytest.raises(BenchError, match="99999"):
        splits.plot_clip(cap, "99999", tmp_path / "x.png")


def test_reports_splits_does_not_import_torch():
    code = ("import sys; import ifdd_bench.reports.splits as s; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
