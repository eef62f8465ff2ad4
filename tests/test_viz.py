"""ISSM slot visualiser (`viz splits`): statistics and figures from a capture archive, and capture on a tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ifdd_bench.errors import BenchError, DataError
from ifdd_bench.reports import slots

CLASSES = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]


def make_capture(path: Path, *, n: int = 10, pos_d=(4.0, 5.0, 5.0, 5.0), pos_a=(0.0, 1.0, 2.0, 3.0),
                 neutral: int = 1, strip: bool = True, grid_d=None) -> Path:
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
    if grid_d is not None:
        arrays["grid_a"], arrays["grid_d"] = np.array([0.0, 2, 4, 6]), np.array(grid_d, dtype=float)
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
    w = slots.token_weights(np.array([[4.25, 7.0, -0.3, 2.0]]), 8)[0]
    assert w.shape == (4, 8) and np.allclose(w.sum(axis=1), 1)
    assert w[0, 4] == pytest.approx(0.75) and w[0, 5] == pytest.approx(0.25)
    assert w[1, 7] == 1 and w[2, 0] == 1 and w[3, 2] == 1


def test_slot_statistics_known_answer(tmp_path):
    cap = slots.load_capture(make_capture(tmp_path / "c.npz"))
    stats = slots.slot_statistics(cap, n_boot=500)
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
    md = slots.statistics_markdown(stats, cap.meta)
    assert "| expression share | ISSM detail group | 100.0% |" in md and "+75.0%" in md


def test_fractional_positions_count_by_weight(tmp_path):
    # slots half-way between token 3 (no expression) and token 4 (expression): half their weight counts
    cap = slots.load_capture(make_capture(tmp_path / "c.npz", pos_d=(3.5, 3.5, 3.5, 3.5), neutral=0))
    stats = slots.slot_statistics(cap, n_boot=200)
    assert _stat(stats, "ISSM detail group")["estimate"] == pytest.approx(0.5)
    apex = _stat(stats, "ISSM detail group", "apex token hit (a detail slot's nearest token)")
    assert apex["estimate"] == 0.0  # rint(3.5) = 4, the apex (frame 10) is token 5


def test_zero_offset_grid_separates_learning_from_the_grid(tmp_path):
    # the grid alone puts the detail slots on tokens 4, 4, 6, 7 (share 2/4); ISSM's slots get 4/4
    cap = slots.load_capture(make_capture(tmp_path / "c.npz", grid_d=(4.0, 4.0, 6.0, 7.0), neutral=0))
    stats = slots.slot_statistics(cap, n_boot=200)
    assert _stat(stats, "zero-offset grid (detail)")["estimate"] == pytest.approx(0.5)
    learned = _stat(stats, "ISSM detail - zero-offset grid (paired)", "expression share difference")
    assert learned["estimate"] == pytest.approx(0.5) and learned["p_value"] < 0.01


def test_render_writes_figures_and_tables(tmp_path):
    out = slots.render_slots(make_capture(tmp_path / "c.npz"), tmp_path / "viz")
    names = {p.name for p in out["files"]}
    assert {"split_00001.png", "split_00001.pdf", "split_00002.png", "split_positions.png",
            "split_stats.csv", "split_stats.md"} <= names
    for p in out["files"]:
        assert p.stat().st_size > 1000 or p.suffix in (".csv", ".md")
    assert (tmp_path / "viz" / "split_00001.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_capture_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        slots.load_capture(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read"):
        slots.load_capture(tmp_path / "junk.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not an ifdd-bench split capture"):
        slots.load_capture(tmp_path / "foreign.npz")
    cap = slots.load_capture(make_capture(tmp_path / "c.npz", neutral=10))
    with pytest.raises(DataError, match="no clip with an expression"):
        slots.slot_statistics(cap)
    with pytest.raises(BenchError, match="99999"):
        slots.plot_clip(cap, "99999", tmp_path / "x.png")


def test_reports_slots_does_not_import_torch():
    code = ("import sys; import ifdd_bench.reports.slots as s; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# capture on a tiny checkpoint (torch)


def _write_checkpoint(run_dir: Path, model_name: str = "ifdd_tiny", variant: str = "full") -> Path:
    """A checkpoint in the engine's format for a freshly initialised model on SynthDFER smoke clips."""
    torch = pytest.importorskip("torch")
    from ifdd_bench import registry
    from ifdd_bench.config import DataConfig, protocol_preset, to_dict, train_hash
    from ifdd_bench.engine.checkpoint import FORMAT, save_atomic

    data = DataConfig(dataset="synth", synth_preset="smoke", frames=16, size=32)
    cfg = registry.resolve_config(model_name, variant, num_classes=7, frames=16, img_size=32)
    torch.manual_seed(0)
    model = registry.build_from_config(model_name, cfg)
    ckpt = {"format": FORMAT, "kind": "best", "run_id": f"{model_name}-{variant}-synth-f1-s0-unified",
            "model": model_name, "variant": variant, "model_config": to_dict(cfg), "data_config": to_dict(data),
            "protocol": "unified", "train_hash": train_hash(protocol_preset("unified")), "classes": CLASSES,
            "epoch": 0, "model_state": model.state_dict()}
    path = run_dir / "best.pt"
    save_atomic(ckpt, path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    _write_checkpoint(run_dir)
    return run_dir


def test_capture_on_tiny_checkpoint(tiny_run, tmp_path):
    from ifdd_bench.engine.capture import capture_slots, save_capture

    result = capture_slots(tiny_run, split="test", limit=6, strip_clips=1)
    a = result.arrays
    n = len(a["clip_ids"])
    assert n == 6 and a["pos_a"].shape == (n, 4) and a["pos_d"].shape == (n, 4)
    assert a["similarity"].shape == (n, 8, 8) and np.isfinite(a["similarity"]).all()
    assert ((a["pos_d"] >= 0) & (a["pos_d"] <= 7)).all()
    # an untrained ISSM starts near the lattice, through the reference grid (spec 6.1: 0.643 ... 7)
    assert np.abs(a["pos_d"] - np.array([0.643, 2.929, 5.214, 7.0])).max() < 0.5
    assert np.allclose(a["grid_d"], [4.5 / 7, 20.5 / 7, 36.5 / 7, 7.0])  # p = 8i/7 - 0.5, clamped
    assert np.allclose(a["detail_spatial"].reshape(n, -1).sum(axis=1), 1.0, atol=1e-5)
    assert a["frame_index"].shape == (n, 16) and a["intensity"].shape[0] == n and "apex" in a
    assert a["strip"].shape == (1, 16, 32, 32, 3) and a["strip"].dtype == np.uint8
    assert result.meta["split_module"] == "issm" and result.meta["attention_source"] == "ladm_mhsa"
    path = save_capture(result, tmp_path / "viz")
    cap = slots.load_capture(path)
    assert cap.n == n and cap.has_truth and cap.has("detail_token_mass")
    assert np.allclose(cap["detail_token_mass"].sum(axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "viz" / "capture.csv").read_text().count("\n") == n + 1


def test_viz_splits_cli_on_tiny_checkpoint(tiny_run, tmp_path):
    from click.testing import CliRunner

    import cli

    out = tmp_path / "viz"
    res = CliRunner().invoke(cli.main, ["viz", "splits", "--checkpoint", str(tiny_run), "--limit", "8",
                                        "--clips", "00001", "--out-dir", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "expression share" in res.output and "| ISSM detail group |" in res.output
    assert (out / "split_stats.md").exists() and (out / "split_00001.png").exists()
    # re-render from the capture alone (no checkpoint, no torch work)
    clip = str(slots.load_capture(out / "capture.npz")["clip_ids"][1])
    res = CliRunner().invoke(cli.main, ["viz", "splits", "--capture", str(out / "capture.npz"), "--clips", clip,
                                        "--out-dir", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli.main, ["viz", "splits", "--checkpoint", str(tiny_run), "--clips", "99999"])
    assert res.exit_code == 2 and "99999" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli.main, ["viz", "splits", "--checkpoint", str(tiny_run), "--batch-size", "0"])
    assert res.exit_code == 2 and "--batch-size must be >= 1" in res.output and "Traceback" not in res.output
    assert (tmp_path / "again" / f"split_{clip}.png").exists()


def test_viz_rejects_non_ifdd_and_splitless_checkpoints(tmp_path):
    from ifdd_bench import registry
    from ifdd_bench.engine.capture import load_ifdd

    gap = _write_checkpoint(tmp_path / "gap", "ifdd_tiny", "gap")
    with pytest.raises(BenchError, match="no frame split"):
        load_ifdd(gap)
    others = [m for m in registry.list_models() if registry.get_entry(m).family != "ifdd"]
    if others:
        torch = pytest.importorskip("torch")
        from ifdd_bench.engine.checkpoint import FORMAT

        torch.save({"format": FORMAT, "model": others[0], "variant": "full", "model_config": {}, "model_state": {}},
                   tmp_path / "other.pt")
        with pytest.raises(BenchError, match="needs an IFDD checkpoint"):
            load_ifdd(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BenchError, match="junk.pt"):
        load_ifdd(tmp_path / "junk.pt")
    with pytest.raises(BenchError, match="holds no best.pt"):
        load_ifdd(tmp_path / "gap" / "..")  # a folder without checkpoints
