"""Face cropping of raw clips (ifdd_bench.data.faces / facecrop), `predict` on raw videos, `data crop`.

The faces are real photographs shipped inside scikit-image's wheel (nothing is downloaded):
``skimage.data.astronaut()`` (one face, annotated by hand: ``fixtures.ASTRONAUT_FACE``) moved and
scaled over the frames of a video written with PyAV (``fixtures.face_clip_frames``), and the LFW
faces of ``skimage.data.lfw_subset()``. The clips without a face pan over scikit-image's coffee and
rocket photographs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data as skdata  # the test extra: real photographs inside the wheel
from PIL import Image

import test_engine_fixtures as fx
from ifdd_bench.data.decode import list_frames, load_video_frames
from ifdd_bench.data.facecrop import MANIFEST, crop_folder, find_clips
from ifdd_bench.data.faces import (CropConfig, FaceDetector, NoFaceError, crop_boxes, crop_clip, follow_face,
                                   import_cv2, smooth_track)
from ifdd_bench.data.fixtures import face_clip_frames, scene_clip_frames, write_video
from ifdd_bench.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    frames, truth = face_clip_frames()
    write_video(root / "face.mp4", frames)
    write_video(root / "coffee.mp4", scene_clip_frames("coffee"))
    write_video(root / "rocket.mp4", scene_clip_frames("rocket"))
    return {"root": root, "face": root / "face.mp4", "truth": truth, "coffee": root / "coffee.mp4",
            "rocket": root / "rocket.mp4"}


def _centres(boxes: np.ndarray) -> np.ndarray:
    """Crop boxes ``(T, 4)`` x0, y0, x1, y1 -> ``(T, 3)`` cx, cy, side."""
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, boxes[:, 2] - boxes[:, 0]], 1)


# --------------------------------------------------------------------------------------------
# the detector on real faces


def test_detector_finds_real_lfw_faces_and_not_their_non_face_patches():
    lfw = skdata.lfw_subset()  # (200, 25, 25): 100 faces, then 100 patches without a face
    background = np.asarray(Image.fromarray(skdata.coffee()).convert("L").resize((240, 180)))
    detector = FaceDetector()

    def found(index: int) -> bool:
        face = Image.fromarray((lfw[index] * 255).astype(np.uint8)).resize((96, 96), Image.BICUBIC)
        gray = background.copy()
        gray[40:136, 100:196] = np.asarray(face)  # face centre at (148, 88)
        boxes = detector(gray)
        return any(abs(x + w / 2 - 148) < 20 and abs(y + h / 2 - 88) < 20 for x, y, w, h in boxes)

    assert sum(found(i) for i in range(0, 100, 5)) >= 18  # 20 real faces
    assert not any(found(i) for i in range(100, 200, 5))  # 20 patches without a face


def test_crop_follows_the_moving_real_face(clips, tmp_path):
    out = tmp_path / "face"
    result = crop_clip(clips["face"], out)
    truth = clips["truth"]
    assert result.frames == 24 and result.examined == 12 and result.detected >= 10
    assert [p.name for p in list_frames(out)] == [f"{i}.jpg" for i in range(1, 25)]
    assert all(Image.open(p).size == (224, 224) for p in list_frames(out))
    assert not list(tmp_path.glob(".*partial*"))
    got = _centres(result.boxes)
    cfg = CropConfig()
    face_centre_y = got[:, 1] - cfg.shift * got[:, 2] / (1 + 2 * cfg.margin)
    err = np.hypot(got[:, 0] - truth[:, 0], face_centre_y - truth[:, 1])
    assert err.max() < 0.2 * truth[:, 2].min(), err  # within a fifth of the face, every frame
    ratio = got[:, 2] / truth[:, 2]  # the crop grows with the face: 1.4 x the detector box
    assert np.all((ratio > 1.1) & (ratio < 1.9)) and got[-1, 2] > 1.2 * got[0, 2]
    # the written crop shows the face: a crop of crop 12 is itself detected as a face, centred
    face = np.asarray(Image.open(out / "12.jpg").convert("L"))
    (x, y, w, h), = FaceDetector()(face)
    assert abs(x + w / 2 - 112) < 20 and w > 100


def test_a_clip_without_a_face_ends_in_a_clear_error_and_writes_nothing(clips, tmp_path):
    for name in ("coffee", "rocket"):
        with pytest.raises(NoFaceError, match=r"no face found in .*: a face was detected in 0 of the 6 frames"):
            crop_clip(clips[name], tmp_path / name)
        assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="already exists"):
        crop_clip(clips["face"], tmp_path)


def test_a_phone_clip_stored_sideways_is_turned_upright(clips, tmp_path):
    frames, _ = face_clip_frames(n=8)
    sideways = [np.rot90(f, -1) for f in frames]  # stored turned clockwise, shown turned back
    write_video(tmp_path / "phone.mp4", sideways, rotation=90)
    write_video(tmp_path / "upright.mp4", frames)
    shown = load_video_frames(tmp_path / "phone.mp4", [0], 48).float()
    upright = load_video_frames(tmp_path / "upright.mp4", [0], 48).float()
    assert (shown - upright).abs().mean() < 6  # the same picture (up to compression) ...
    assert (shown - upright.transpose(-1, -2)).abs().mean() > 20  # ... and not a turned one
    result = crop_clip(tmp_path / "phone.mp4", tmp_path / "crop")
    assert (result.width, result.height) == (320, 240) and result.detected >= 3


def test_frame_folders_are_cropped_like_videos(clips, tmp_path):
    frames, _ = face_clip_frames(n=10)
    for i, rgb in enumerate(frames):
        (tmp_path / "raw").mkdir(exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "raw" / f"{i + 1}.png")
    result = crop_clip(tmp_path / "raw", tmp_path / "crop", CropConfig(size=112, detect_every=1))
    assert result.examined == 10 and len(list_frames(tmp_path / "crop")) == 10
    assert Image.open(tmp_path / "crop" / "1.jpg").size == (112, 112)


# --------------------------------------------------------------------------------------------
# following and smoothing (no detector)


def _box(cx, cy, side):
    return np.array([[cx - side / 2, cy - side / 2, side, side]], dtype=float)


def test_follow_face_keeps_the_largest_confirmed_face_and_reacquires_after_a_cut():
    big, small = _box(100, 100, 60), _box(300, 100, 30)
    ghost = _box(200, 200, 120)  # one large false detection that no neighbouring frame confirms
    dets = [np.vstack([big, small]), None, np.vstack([big + [4, 0, 0, 0], small, ghost]),
            np.vstack([big + [8, 0, 0, 0], small]), np.empty((0, 4))]
    chosen = follow_face(dets)
    assert chosen[1] is None and chosen[4] is None
    assert [c[0] for c in (chosen[0], chosen[2], chosen[3])] == [70, 74, 78]  # the big face, moving
    # after a cut only the small face is there: taken once `reacquire` examined frames missed the big one
    cut = [big, big, np.vstack([big, small])] + [small] * 4
    chosen = follow_face(cut, reacquire=2)
    assert [c is not None for c in chosen] == [True, True, True, False, False, True, True]
    assert chosen[2][2] == 60 and chosen[5][2] == 30
    assert follow_face([None, np.empty((0, 4))]) == [None, None]


def test_smooth_track_interpolates_gaps_and_does_not_lag_a_steady_motion():
    chosen = [_box(10 + 3 * t, 50, 40)[0] if t % 2 == 0 else None for t in range(21)]
    track = smooth_track(chosen, window=7)
    assert track.shape == (21, 3)
    np.testing.assert_allclose(track[:, 0], 10 + 3 * np.arange(21))  # linear motion kept, ends too
    np.testing.assert_allclose(track[:, 2], 40)
    jitter = [_box(100 + (5 if t % 2 else -5), 100, 40)[0] for t in range(20)]
    assert np.ptp(smooth_track(jitter, window=7)[3:-3, 0]) < 2  # +-5 px jitter averaged away
    with pytest.raises(ValueError):
        smooth_track([None, None], 3)


def test_crop_boxes_are_squares_inside_the_frame():
    track = np.array([[50.0, 50, 40], [5, 5, 40], [310, 230, 40], [160, 120, 400]])
    boxes = crop_boxes(track, 320, 240, margin=0.2, shift=0.05)
    np.testing.assert_allclose(boxes[0], [22, 24, 78, 80])  # 1.4 x 40 = 56, centre 2 px lower
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 320) and np.all(boxes[:, 3] <= 240)
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert boxes[3, 2] - boxes[3, 0] == 240  # larger than the frame: shrunk to its shorter side


def test_bad_settings_and_a_missing_opencv_are_clear(monkeypatch):
    with pytest.raises(ConfigError, match="margin=-1 must be in"):
        CropConfig(margin=-1)
    with pytest.raises(ConfigError, match="smooth=6 must be odd"):  # a centred window has an odd width
        CropConfig(smooth=6)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(DataError, match=r"pip install 'ifdd-bench\[face\]'"):
        import_cv2()


# --------------------------------------------------------------------------------------------
# predict on raw videos


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from dataclasses import replace

    from ifdd_bench.config import DataConfig
    from ifdd_bench.engine.loop import fit

    spec = fx.make_spec(tmp_path_factory.mktemp("runs"), epochs=1)
    spec = replace(spec, data=DataConfig(dataset="synth", frames=4, segments=4, size=8))
    fit(spec, fx.make_bundle(n_train=12, n_val=3, n_test=3))
    return Path(spec.runs_dir) / spec.run_id


_cli = fx.run_cli


def test_predict_crops_a_raw_video_first(clips, run_dir, tmp_path):
    from ifdd_bench.engine.predict import predict

    cropped = predict([clips["face"]], checkpoint=run_dir)["predictions"][0]
    assert cropped["path"] == str(clips["face"]) and cropped["face"]["detected"] >= 10
    # the same as classifying the crop folder that `data crop` writes
    crop_clip(clips["face"], tmp_path / "face")
    folder = predict([tmp_path / "face"], checkpoint=run_dir)["predictions"][0]
    assert folder["face"] is None
    assert folder["probs"] == pytest.approx(cropped["probs"], abs=1e-6)
    whole = predict([clips["face"]], checkpoint=run_dir, crop=False)["predictions"][0]
    assert whole["face"] is None
    assert max(abs(whole["probs"][c] - cropped["probs"][c]) for c in fx.CLASSES) > 1e-4
    # --crop on a frame folder crops it too
    again = predict([tmp_path / "face"], checkpoint=run_dir, crop=True)["predictions"][0]
    assert again["face"]["examined"] == 12
    with pytest.raises(NoFaceError, match="no face found in"):
        predict([clips["face"], clips["coffee"]], checkpoint=run_dir)


def test_cli_predict_raw_video_no_face_and_no_crop(clips, run_dir):
    ok = _cli("predict", "--checkpoint", run_dir, clips["face"])
    assert ok.exit_code == 0 and "facefoundin" in ok.text and "/12frames" in ok.text
    bad = _cli("predict", "--checkpoint", run_dir, clips["coffee"])
    assert bad.exit_code == 2 and "error:nofacefoundin" in bad.text and "--no-crop" in bad.text
    assert "prediction" not in bad.text
    plain = _cli("predict", "--checkpoint", run_dir, "--no-crop", "--json", clips["coffee"])
    assert plain.exit_code == 0 and json.loads(plain.output)["predictions"][0]["face"] is None


# --------------------------------------------------------------------------------------------
# data crop


def test_data_crop_writes_a_layout_the_mafw_reader_takes(clips, tmp_path):
    from ifdd_bench.data.fixtures import write_mafw
    from ifdd_bench.data.readers import read_split

    root = write_mafw(tmp_path / "MAFW", [("anger", 4)], [("fear", 4)])  # frames/00001, frames/00002
    (root / "clips").mkdir()
    for num, name in ((1, "face"), (2, "face"), (3, "coffee")):
        (root / "clips" / f"{num:05d}.mp4").write_bytes(clips[name].read_bytes())
    result = _cli("data", "crop", root / "clips", "--out-dir", root / "faces", "--size", "64")
    assert result.exit_code == 0, result.output
    assert "3clip(s)" in result.text and "2cropped" in result.text and "1skipped" in result.text
    assert "skipped00003:nofacefoundin" in result.text
    recs = read_split("mafw", root, "train", 1, frame_source="faces")
    assert recs.records[0].source == root / "faces" / "00001" and recs.records[0].num_frames == 24
    assert Image.open(root / "faces" / "00002" / "24.jpg").size == (64, 64)
    manifest = json.loads((root / "faces" / MANIFEST).read_text())
    assert manifest["settings"]["size"] == 64 and manifest["detector"]["detector"].endswith("alt2.xml")
    assert manifest["clips"]["00001"]["frames"] == 24 and "no face found" in manifest["failed"]["00003"]
    # resumable: finished clips are skipped; other settings into the same folder are refused
    again = _cli("data", "crop", root / "clips", "--out-dir", root / "faces", "--size", "64", "--json")
    summary = json.loads(again.output)
    assert summary["finished_before"] == ["00001", "00002"] and summary["cropped"] == []
    assert list(summary["failed"]) == ["00003"] and again.exit_code == 0
    other = _cli("data", "crop", root / "clips", "--out-dir", root / "faces")
    assert other.exit_code == 2 and "size=64" in other.text and "size=224" in other.text


def test_crop_folder_is_atomic_per_clip_resumes_and_runs_workers(clips, tmp_path):
    src = tmp_path / "in"
    for rel in ("a/one.mp4", "a/two.mp4", "b/three.mp4"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(clips["face"].read_bytes())
    (src / "b" / "notes.txt").write_text("not a clip")
    assert list(find_clips(src)) == ["a/one", "a/two", "b/three"]
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / ".two.partial-999").mkdir()  # left by an interrupted run
    crop_clip(clips["face"], out / "a" / "one", CropConfig(size=32))
    events = []
    summary = crop_folder(src, out, CropConfig(size=32), workers=2, progress=events.append)
    assert summary.finished_before == ["a/one"] and summary.cropped == ["a/two", "b/three"] and summary.ok
    assert not list(out.rglob(".*partial*")) and len(list_frames(out / "b" / "three")) == 24
    assert events[-1] == {"kind": "data_progress", "stage": "face crop", "done": 3, "total": 3}


def test_data_crop_bad_input(clips, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.mp4").write_bytes(clips["coffee"].read_bytes())
    all_fail = _cli("data", "crop", src, "--out-dir", tmp_path / "out")
    assert all_fail.exit_code == 1 and "noclipcouldbecropped" in all_fail.text
    assert not (tmp_path / "out" / "x").exists()
    inside = _cli("data", "crop", src, "--out-dir", src / "faces")
    assert inside.exit_code == 2 and "isinsidetheinputfolder" in inside.text and not (src / "faces").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _cli("data", "crop", empty, "--out-dir", tmp_path / "o2")
    assert none.exit_code == 2 and "novideofilesorframefoldersfound" in none.text and not (tmp_path / "o2").exists()
    (src / "x.avi").write_bytes(b"")
    clash = _cli("data", "crop", src, "--out-dir", tmp_path / "o3")
    assert clash.exit_code == 2 and "twosources:x.aviandx.mp4" in clash.text
    missing = _cli("data", "crop", tmp_path / "nope", "--out-dir", tmp_path / "o4")
    assert missing.exit_code == 2 and "doesnotexist" in missing.text
    (tmp_path / "file").write_text("keep me")
    to_file = _cli("data", "crop", src, "--out-dir", tmp_path / "file")
    assert to_file.exit_code == 2 and "isafile" in to_file.text and (tmp_path / "file").read_text() == "keep me"
    bad_margin = _cli("data", "crop", src, "--out-dir", tmp_path / "o5", "--margin", "-1")
    assert bad_margin.exit_code == 2 and "margin=-1.0mustbein[0,2]" in bad_margin.text
    (src / "x.avi").unlink()
    (tmp_path / "o6").mkdir()
    (tmp_path / "o6" / "face_crop.json").write_text("[]")  # valid JSON, not a manifest
    not_manifest = _cli("data", "crop", src, "--out-dir", tmp_path / "o6")
    assert not_manifest.exit_code == 2 and "isnotaface-cropmanifest" in not_manifest.text
