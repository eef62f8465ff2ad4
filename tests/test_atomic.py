"""ifdd_bench.atomic: permissions follow the umask, failures keep the old file and leave no temp."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ifdd_bench.atomic import (atomic_open, atomic_path, current_umask, default_file_mode, json_text, write_bytes_atomic,
                               write_text_atomic)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_mode_follows_umask_for_every_writer(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    assert default_file_mode() == 0o666 & ~mask
    write_text_atomic(tmp_path / "a.txt", "x")
    write_bytes_atomic(tmp_path / "b.bin", b"x")
    with atomic_open(tmp_path / "c.csv", "w", fsync=True) as fh:
        fh.write("x")
    with atomic_path(tmp_path / "d.npz", suffix=".npz") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.txt", "b.bin", "c.csv", "d.npz"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name
    # replacing an existing file gives the new file the umask mode too, not mkstemp's 0600
    os.chmod(tmp_path / "a.txt", 0o600)
    write_text_atomic(tmp_path / "a.txt", "y")
    assert _mode(tmp_path / "a.txt") == 0o666 & ~mask


def test_umask_is_read_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still set


def test_text_and_bytes_round_trip(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "dir" / "t.md", "größe\nline 2\n")
    assert path == tmp_path / "sub" / "dir" / "t.md"
    assert path.read_bytes() == "größe\nline 2\n".encode("utf-8")
    data = bytes(range(256)) * 3
    assert write_bytes_atomic(tmp_path / "b.bin", data).read_bytes() == data
    # newline="" keeps \r\n untranslated (csv writer output)
    write_text_atomic(tmp_path / "jobs.csv", "a,b\r\n1,2\r\n", newline="")
    assert (tmp_path / "jobs.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    with atomic_open(tmp_path / "o.bin", "wb") as fh:
        fh.write(b"\x00\x01")
    assert (tmp_path / "o.bin").read_bytes() == b"\x00\x01"


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("how", ["text", "binary", "path"])
def test_failed_writer_keeps_old_file_and_leaves_no_temp(tmp_path, how):
    target = tmp_path / "report.md"
    target.write_text("old content")
    with pytest.raises(RuntimeError, match="writer broke"):
        if how == "path":
            with atomic_path(target, suffix=".md") as tmp:
                tmp.write_text("half of the new")
                assert tmp.parent == tmp_path and tmp.exists()
                raise RuntimeError("writer broke")
        else:
            with atomic_open(target, "w" if how == "text" else "wb") as fh:
                fh.write("half" if how == "text" else b"half")
                raise RuntimeError("writer broke")
    assert target.read_text() == "old content"
    assert _leftovers(tmp_path, {"report.md"}) == []


def test_failed_replace_removes_temp(tmp_path):
    target = tmp_path / "is_a_folder"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        write_text_atomic(target, "cannot replace a non-empty folder")
    assert (target / "inside").read_text() == "kept"
    assert _leftovers(tmp_path, {"is_a_folder"}) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "x.csv"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as fh:
            fh.write("partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(tmp_path, set()) == []


def test_bad_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_module_imports_nothing_heavy():
    # every layer (reports included, which must never import torch) may import this module
    code = ("import sys, ifdd_bench.atomic; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pandas')"
            " or (m.startswith('ifdd_bench.') and m != 'ifdd_bench.atomic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_call_sites_write_umask_mode(tmp_path, umask):
    # every file the package writes (reports, figures, splits, captures, checkpoints, jobs) must be
    # group/other readable under umask 022, not 0600 as a bare mkstemp leaves it
    import numpy as np
    import torch

    from ifdd_bench.sweep import jobbook
    from ifdd_bench.data.holdout import write_holdout
    from ifdd_bench.data.records import ClipRecord
    from ifdd_bench.engine.capture import CaptureResult, save_capture
    from ifdd_bench.engine.checkpoint import atomic_write_text, load_checkpoint, save_atomic
    from ifdd_bench.reports import plots, render

    umask(0o022)
    written = [render.write_text(tmp_path / "r" / "summary.csv", "a\n")]
    fig = plots.plt.figure(figsize=(1, 1))
    written += plots.save_figure(fig, tmp_path / "fig", "plot")
    rec = ClipRecord("c1", "c1.mp4", 0, 8)
    write_holdout(tmp_path / "holdout.csv", [rec], [])
    written.append(tmp_path / "holdout.csv")
    jobbook.JobBook(tmp_path / "sweep", "s1")._write([])
    written.append(tmp_path / "sweep" / "jobs.csv")
    write_text_atomic(tmp_path / "sweep" / "sweep.json", json_text({"a": 1}))  # how run_sweep writes sweep.json
    written.append(tmp_path / "sweep" / "sweep.json")
    arrays = {"clip_ids": np.array(["c1"]), "labels": np.array([0]), "preds": np.array([0]),
              "pos_a": np.zeros((1, 2)), "pos_d": np.zeros((1, 2))}
    written.append(save_capture(CaptureResult(arrays, {"classes": ["a"]}), tmp_path / "cap"))
    written.append(tmp_path / "cap" / "capture.csv")
    save_atomic({"format": "ifdd-bench-checkpoint/1", "w": torch.zeros(2)}, tmp_path / "run" / "last.pt")
    atomic_write_text(tmp_path / "run" / "history.csv", "epoch\n0\n")
    written += [tmp_path / "run" / "last.pt", tmp_path / "run" / "history.csv"]
    assert torch.equal(load_checkpoint(tmp_path / "run" / "last.pt")["w"], torch.zeros(2))
    assert [p.name for p in written if _mode(p) != 0o644] == []
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temp file left anywhere


def test_json_text_is_the_one_json_format():
    """nan/inf become null (JSON has no nan), tuples lists, other values their str; one trailing newline."""
    import json

    from pathlib import PurePosixPath

    text = json_text({"a": float("nan"), "b": (1, float("inf")), "c": PurePosixPath("x/y"), 3: "k"})
    assert text.endswith("}\n") and json.loads(text) == {"a": None, "b": [1, None], "c": "x/y", "3": "k"}


def test_cli_json_output_is_valid_json(capsys):
    """--json prints what json_text writes: nan (the reference protocol's val_uar) as null."""
    import json

    from ifdd_bench.console import print_json

    print_json({"val_uar": float("nan"), "uar": 0.5})
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out, parse_constant=lambda c: 1 / 0) == {"val_uar": None, "uar": 0.5}
