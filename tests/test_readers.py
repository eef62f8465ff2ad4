"""Readers of the official DFEW / FERV39k / MAFW layouts, list importers, video sources, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ifdd_bench.data.decode import count_video_frames, frame_sort_key, list_frames, load_video_frames
from ifdd_bench.data.fixtures import write_dfew, write_ferv39k, write_frames, write_mafw
from ifdd_bench.data.labels import (DFEW_CLASSES, FERV39K_CLASSES, MAFW_CLASSES, MAFW_CLASSES_DFERCLIP,
                                    MAFW_OFFICIAL_TO_DFERCLIP)
from ifdd_bench.data.lists import has_imported, import_lists, parse_list_file
from ifdd_bench.data.readers import read_split
from ifdd_bench.errors import ConfigError, DataError


# --------------------------------------------------------------------------------------------
# DFEW


@pytest.mark.parametrize("official_names", [True, False])
def test_dfew_labels_are_one_based_and_label0_rows_are_skipped(tmp_path, official_names):
    rows = [(1, 5, 16), (2, 1, 16), (3, 7, 16)]
    root = write_dfew(tmp_path, rows, test=[(10, 2, 16)], official_names=official_names, size=16, label0=[4, 5])
    recs = read_split("dfew", root, "train", 1)
    assert [r.clip_id for r in recs.records] == ["00001", "00002", "00003"]
    assert [DFEW_CLASSES[r.label] for r in recs.records] == ["surprise", "happy", "fear"]
    assert recs.counts == {"label0_skipped": 2}
    assert all(r.num_frames == 16 for r in recs.records)
    assert recs.records[0].source == root / "Clip" / "clip_224x224_16f" / "00001"
    test = read_split("dfew", root, "test", 1)
    assert [(r.clip_id, r.label) for r in test.records] == [("00010", 1)]


def test_dfew_ifdd_val_folder_is_the_test_list_and_raw_frames_are_selectable(tmp_path):
    root = write_dfew(tmp_path, [(1, 1, 20)], frames_dir="raw", size=16, official_names=False)
    (root / "EmoLabel_DataSplit" / "test_single-labeled").rename(root / "EmoLabel_DataSplit" / "val_single-labeled")
    (root / "EmoLabel_DataSplit" / "val_single-labeled" / "set_1.csv").write_text("video_name,label\n1,1\n")
    test = read_split("dfew", root, "test", 1, frame_source="raw")
    assert test.records[0].num_frames == 20
    assert test.records[0].source.parent.name == "clip_224x224"
    with pytest.raises(DataError, match="missing clip"):
        read_split("dfew", root, "test", 1)  # the 16f folder does not exist


def test_short_clips_are_counted_not_dropped(tmp_path):
    root = write_dfew(tmp_path, [(1, 1, 16), (2, 2, 15)], size=16)
    recs = read_split("dfew", root, "train", 1, clip_len=16)
    assert len(recs) == 2 and recs.counts["short_clips"] == 1


def test_frames_sort_by_trailing_integer(tmp_path):
    names = ["10.jpg", "2.jpg", "1.jpg", "a_3.jpg", "x.jpg", "notes.txt"]
    write_frames(tmp_path, 0, names=[n for n in names if n.endswith(".jpg")], size=(8, 8))
    (tmp_path / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frames(tmp_path)] == ["1.jpg", "2.jpg", "a_3.jpg", "10.jpg", "x.jpg"]
    assert frame_sort_key("00012_0007.jpg")[1] == 7
    assert frame_sort_key("/data/v1.2/12.jpg".rsplit("/", 1)[1])[1] == 12


# --------------------------------------------------------------------------------------------
# FERV39k


@pytest.mark.parametrize("setups_dir", [True, False])
def test_ferv39k_maps_labels_by_name(tmp_path, setups_dir):
    root = write_ferv39k(tmp_path, [("Action", "Happy", 5), ("Crime", "Fear", 20)], [("School", "Angry", 8)],
                         setups_dir=setups_dir, size=16)
    recs = read_split("ferv39k", root, "train", 1)
    assert [FERV39K_CLASSES[r.label] for r in recs.records] == ["happy", "fear"]
    assert recs.records[0].clip_id == "Action/Happy/0001" and recs.records[0].num_frames == 5
    assert recs.counts == {"short_clips": 1}
    dfew_order = read_split("ferv39k", root, "train", 1, label_order="dfew")
    assert [DFEW_CLASSES[r.label] for r in dfew_order.records] == ["happy", "fear"]
    assert read_split("ferv39k", root, "test", 1).records[0].label == FERV39K_CLASSES.index("angry")
    with pytest.raises(ConfigError, match="fold must be 1"):
        read_split("ferv39k", root, "train", 2)


def test_ferv39k_accepts_ifdd_val_all_as_test_list(tmp_path):
    root = write_ferv39k(tmp_path, [("Action", "Sad", 8)], [("Action", "Neutral", 8)], test_name="val_All.csv", size=16)
    assert len(read_split("ferv39k", root, "test", 1)) == 1


# --------------------------------------------------------------------------------------------
# MAFW


@pytest.mark.parametrize("list_parent", ["Train & Test Set/single/no_caption", "label/no_caption",
                                         "MAFW/data/split/single/no_caption"])
def test_mafw_layouts_and_label_orders(tmp_path, list_parent):
    root = write_mafw(tmp_path, [("anger", 5), ("contempt", 64), ("happiness", 16)], [("sadness", 20)],
                      list_parent=list_parent)
    recs = read_split("mafw", root, "train", 1)
    assert [MAFW_CLASSES[r.label] for r in recs.records] == ["anger", "contempt", "happiness"]
    assert recs.records[1].num_frames == 64 and recs.records[0].clip_id == "00001"
    remapped = read_split("mafw", root, "train", 1, label_order="dferclip")
    assert [MAFW_CLASSES_DFERCLIP[r.label] for r in remapped.records] == ["anger", "contempt", "happiness"]
    assert [MAFW_OFFICIAL_TO_DFERCLIP[r.label] for r in recs.records] == [r.label for r in remapped.records]


def test_mafw_remap_table():
    assert MAFW_OFFICIAL_TO_DFERCLIP == (3, 5, 6, 0, 2, 1, 4, 7, 8, 9, 10)


def test_mafw_faces_frame_source(tmp_path):
    root = write_mafw(tmp_path, [("fear", 9)], [("anxiety", 9)], frame_dir="faces")
    with pytest.raises(DataError, match="frame folder 'frames' not found"):
        read_split("mafw", root, "train", 1)
    assert read_split("mafw", root, "train", 1, frame_source="faces").records[0].source.parent.name == "faces"


# --------------------------------------------------------------------------------------------
# bad input


def test_missing_root_and_missing_split_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_split("dfew", tmp_path / "nope", "train", 1)
    root = write_dfew(tmp_path / "d", [(1, 1, 16)], size=16)
    with pytest.raises(DataError, match=r"dfew train list for fold 2 not found"):
        read_split("dfew", root, "train", 2)
    with pytest.raises(ConfigError, match="fold=6"):
        read_split("dfew", root, "train", 6)
    with pytest.raises(ConfigError, match="frame_source"):
        read_split("dfew", root, "train", 1, frame_source="faces")


def test_malformed_csv_line_names_file_and_line(tmp_path):
    root = write_dfew(tmp_path, [(1, 1, 16)], size=16)
    csv_path = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    csv_path.write_text("video_name,label\n1,1\nabc,def\n")
    with pytest.raises(DataError, match=r"set_1\.csv:3: expected an integer clip id"):
        read_split("dfew", root, "train", 1)
    csv_path.write_text("video_name,label\n1,9\n")
    with pytest.raises(DataError, match=r"set_1\.csv:2: label 9 is outside"):
        read_split("dfew", root, "train", 1)


def test_unknown_label_word_names_file_and_line(tmp_path):
    root = write_mafw(tmp_path, [("anger", 5)], [("anger", 5)])
    path = root / "Train & Test Set/single/no_caption/set_1/train.txt"
    path.write_text("00001.mp4 anger\n00002.mp4 anger_disgust\n")
    with pytest.raises(DataError, match=r"train\.txt:2: unknown label 'anger_disgust'") as err:
        read_split("mafw", root, "train", 1)
    assert "compound" in str(err.value)


def test_empty_split_missing_clip_and_zero_frame_clip(tmp_path):
    root = write_dfew(tmp_path, [(1, 1, 16), (2, 2, 16)], size=16)
    csv_path = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    csv_path.write_text("video_name,label\n1,0\n")
    with pytest.raises(DataError, match="empty split"):
        read_split("dfew", root, "train", 1)
    csv_path.write_text("video_name,label\n1,1\n2,2\n3,3\n")
    with pytest.raises(DataError, match=r"1 missing clip problem.*00003"):
        read_split("dfew", root, "train", 1)
    (root / "Clip" / "clip_224x224_16f" / "00003").mkdir()
    with pytest.raises(DataError, match=r"zero frames.*00003.*no image files"):
        read_split("dfew", root, "train", 1)
    lax = read_split("dfew", root, "train", 1, strict=False)
    assert len(lax) == 2 and list(lax.problems) == ["zero_frames"]


# --------------------------------------------------------------------------------------------
# list importers


def test_import_former_dfer_and_mae_dfer_lists(tmp_path):
    frames = tmp_path / "frames"
    for name, count in (("c1", 16), ("c2", 12), ("c3", 16)):
        write_frames(frames / name, count, size=(16, 16))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text(f"{frames / 'c1'} 16 0\n{frames / 'c2'} 12 6\n")  # Former-DFER: abs dir, n, label
    (lists / "test.csv").write_text("../frames/c3 3\n")  # MAE-DFER: relative dir, label
    out = tmp_path / "root"
    summary = import_lists("dfew", out, 1, {"train": lists / "train.txt", "test": lists / "test.csv"})
    assert summary["train"]["clips"] == 2 and has_imported(out, 1)
    recs = read_split("dfew", out, "train", 1)
    assert [DFEW_CLASSES[r.label] for r in recs.records] == ["happy", "fear"]
    assert recs.records[1].num_frames == 12 and recs.counts["short_clips"] == 1
    assert DFEW_CLASSES[read_split("dfew", out, "test", 1).records[0].label] == "angry"


def test_import_integer_labels_need_an_order_for_ferv39k_and_mafw(tmp_path):
    write_frames(tmp_path / "c1", 4, size=(8, 8))
    lst = tmp_path / "l.txt"
    lst.write_text(f"{tmp_path / 'c1'} 4 0\n")
    with pytest.raises(DataError, match="several class orders"):
        parse_list_file(lst, "ferv39k")
    assert FERV39K_CLASSES[parse_list_file(lst, "ferv39k", label_order="dfew")[0][2]] == "happy"
    assert FERV39K_CLASSES[parse_list_file(lst, "ferv39k", label_order="alphabetical")[0][2]] == "angry"
    assert MAFW_CLASSES[parse_list_file(lst, "mafw", label_order="dfew")[0][2]] == "happiness"
    lst.write_text(f"{tmp_path / 'c1'} 4 Sadness\n{tmp_path / 'c1'}\n")
    with pytest.raises(DataError, match=r"l\.txt:2: expected"):
        parse_list_file(lst, "mafw")


# --------------------------------------------------------------------------------------------
# video sources (PyAV)


def _write_mp4(path: Path, frames: int, size: int = 32) -> None:
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), 20 + 10 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_mafw_clip_without_frame_folder_is_read_from_its_video(tmp_path):
    root = write_mafw(tmp_path, [("anger", 16)], [("fear", 16)])
    _write_mp4(root / "clips" / "00003.mp4", 12)
    (root / "Train & Test Set/single/no_caption/set_1/train.txt").write_text("00001.mp4 anger\n00003.mp4 fear\n")
    recs = read_split("mafw", root, "train", 1)
    video = recs.records[1]
    assert video.source.suffix == ".mp4" and video.num_frames == 12 and recs.counts["video_sources"] == 1
    assert count_video_frames(video.source) == 12
    frames = load_video_frames(video.source, [0, 5, 11, 30], 16)  # 30 is clamped to the last frame
    assert frames.shape == (4, 3, 16, 16)
    assert frames[0].float().mean() < frames[1].float().mean() < frames[2].float().mean()
    assert frames[2].equal(frames[3])
