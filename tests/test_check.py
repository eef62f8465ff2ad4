"""``data check``: counts against the official numbers, problems vs warnings, exit codes; ``data import``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from ifdd_bench.data.check import OFFICIAL, check_dataset, frame_file_ok
from ifdd_bench.data.fixtures import balanced_dfew_rows, write_dfew, write_frames, write_mafw


def test_official_numbers_are_consistent():
    dfew = OFFICIAL["dfew"]
    assert sum(dfew["class_totals"].values()) == dfew["total"] == 11697
    assert all(train + test == 11697 for train, test in dfew["folds"].values())
    assert sum(dfew["class_counts"][(1, "train")].values()) == 9356
    assert sum(dfew["class_counts"][(1, "test")].values()) == 2341
    ferv = OFFICIAL["ferv39k"]
    assert sum(ferv["class_counts"][(1, "train")].values()) == 31088
    assert sum(ferv["class_counts"][(1, "test")].values()) == 7847
    mafw = OFFICIAL["mafw"]
    assert sum(mafw["class_totals"].values()) == 9172
    assert all(train + test == 9172 for train, test in mafw["folds"].values())
    assert sum(mafw["class_counts"][(1, "train")].values()) == mafw["folds"][1][0]


def test_good_subset_passes_with_warnings(tmp_path):
    root = write_dfew(tmp_path, balanced_dfew_rows(2) + [(99, 3, 10)], test=balanced_dfew_rows(1, start=50), size=16)
    report = check_dataset("dfew", root, folds=[1])
    assert report.ok
    train = report.rows[0]
    assert (train.fold, train.split, train.clips, train.expected) == (1, "train", 15, 9356)
    assert train.class_counts == [2, 2, 3, 2, 2, 2, 2] and train.matches is False
    assert report.warnings["short_clip"] == ["clip 00099: 10 frame(s) < 16 (padded)"]
    assert "count_mismatch" in report.warnings and report.unique_clips == 22
    assert report.frames_scanned == 21 * 16 + 10


def test_problems_fail_and_frame_defects_are_classified(tmp_path):
    root = write_dfew(tmp_path, balanced_dfew_rows(1), test=balanced_dfew_rows(1, start=50), size=16)
    csv_path = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    csv_path.write_text(csv_path.read_text() + "77,3\nbad line\n12,happy\n")
    clips = root / "Clip" / "clip_224x224_16f"
    first = clips / "00001" / "3.jpg"
    first.write_bytes(first.read_bytes()[:100])  # one truncated frame: replaced at load time
    for path in (clips / "00002").iterdir():
        path.write_bytes(b"")  # every frame empty: the clip cannot be used
    report = check_dataset("dfew", root, folds=[1])
    assert not report.ok
    assert set(report.problems) == {"missing_clip", "malformed_line", "unreadable_clip"}
    assert "00077" in report.problems["missing_clip"][0]
    assert any(":10:" in item for item in report.problems["malformed_line"])  # file:line named
    assert report.warnings["unreadable_frame"] == [f"{first}: truncated JPEG (no end-of-image marker)"]
    decoded = check_dataset("dfew", root, folds=[1], images="decode")
    assert len(decoded.warnings["unreadable_frame"]) == 1 and "unreadable_clip" in decoded.problems


def test_frame_file_check(tmp_path):
    good = write_frames(tmp_path, 1, size=(8, 8), names=["1.jpg"])[0]
    assert frame_file_ok(good) is None
    png = write_frames(tmp_path, 1, size=(8, 8), names=["2.png"])[0]
    assert frame_file_ok(png) is None
    png.write_bytes(png.read_bytes()[:-12])
    assert frame_file_ok(png) == "truncated PNG (no IEND chunk)"
    (tmp_path / "3.jpg").write_bytes(b"GIF89a....")
    assert "not a JPEG" in frame_file_ok(tmp_path / "3.jpg")


def test_cli_check_exit_codes_and_json(tmp_path):
    runner = CliRunner()
    root = write_mafw(tmp_path / "m", [("anger", 16), ("neutral", 8)], [("fear", 16)])
    ok = runner.invoke(main, ["data", "check", "--dataset", "mafw", "--data-root", str(root), "--fold", "1"])
    assert ok.exit_code == 0, ok.output
    assert "7333" in ok.output and "OK" in ok.output
    as_json = runner.invoke(main, ["data", "check", "--dataset", "mafw", "--data-root", str(root), "--fold", "1",
                                   "--json"])
    data = json.loads(as_json.output)
    assert data["ok"] and data["rows"][0]["class_counts"][4] == 1  # neutral, official order
    missing = runner.invoke(main, ["data", "check", "--dataset", "mafw", "--data-root", str(root)])
    assert missing.exit_code == 1 and "missing_split_file" in missing.output  # folds 2..5 absent
    nothing = runner.invoke(main, ["data", "check", "--dataset", "dfew", "--data-root", str(tmp_path / "none")])
    assert nothing.exit_code == 1 and "missing_root" in nothing.output


def test_cli_import_then_train_lists_are_used(tmp_path):
    frames = tmp_path / "frames"
    for name in ("a", "b", "c"):
        write_frames(frames / name, 16, size=(16, 16))
    (tmp_path / "train.txt").write_text(f"{frames / 'a'} 16 1\n{frames / 'b'} 16 2\n")
    (tmp_path / "test.txt").write_text(f"{frames / 'c'} 16 3\n")
    runner = CliRunner()
    args = ["data", "import", "--dataset", "ferv39k", "--data-root", str(tmp_path / "root"),
            "--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt")]
    refused = runner.invoke(main, args)
    assert refused.exit_code == 2 and "several class orders" in refused.output
    done = runner.invoke(main, args + ["--label-order", "dfew"])
    assert done.exit_code == 0, done.output
    report = check_dataset("ferv39k", tmp_path / "root")
    assert report.ok and report.rows[0].clips == 2 and report.rows[0].counts == {"imported_list": 1}
    assert report.rows[0].class_counts == [0, 0, 0, 0, 1, 1, 0]  # sad, neutral in alphabetical order


@pytest.mark.parametrize("bad", [["--workers", "x"], ["--decoders", "torchvision"], ["--workers", "0,-1"],
                                 ["--repeats", "0"], ["--clips", "3"]])
def test_cli_bench_rejects_bad_options(bad):
    out = CliRunner().invoke(main, ["data", "bench", "--model", "none", *bad])
    assert out.exit_code == 2
