"""Annotation files of every format, written small in the datasets' own layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionformer.data.datasets import Annotations, VideoEntry, guess_format, read_annotations
from motionformer.data.sampling import Segment
from motionformer.models.class_names import class_names

K400 = class_names("kinetics400")
EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def epic_line(video_id: str, start: str, stop: str, verb_class: int | str, noun_class: int | str) -> str:
    participant = video_id.split("_")[0]
    return (f"{video_id}_1,{participant},{video_id},00:00:01.00,{start},{stop},1,2,\"open tap, then wash\","
            f"open,{verb_class},tap,{noun_class},\"['tap', 'water']\",\"[{noun_class}, 1]\"\n")


# --- csv / PySlowFast Kinetics lists -------------------------------------------------------------------------------


def test_path_label_space_separated_with_spaces_in_paths(tmp_path):
    listing = write(tmp_path / "train.csv", "a/x.mp4 0\nair drumming/y z.mp4 3\n\nc,d.mp4 2\n")
    annotations = read_annotations(listing, tmp_path / "videos")
    assert annotations == Annotations(entries=[
        VideoEntry(path=tmp_path / "videos/a/x.mp4", label=0, source="train.csv:1"),
        VideoEntry(path=tmp_path / "videos/air drumming/y z.mp4", label=3, source="train.csv:2"),
        VideoEntry(path=tmp_path / "videos/c,d.mp4", label=2, source="train.csv:4"),
    ], class_names=None, format="csv")


def test_path_label_comma_header_and_classes_file(tmp_path):
    write(tmp_path / "classes.txt", "left\nright\n")
    listing = write(tmp_path / "val.csv", "path,label\nv/0.mp4,1\nv/1.mp4, 0\n")
    annotations = read_annotations(listing)  # root: the file's folder
    assert [(entry.path, entry.label) for entry in annotations.entries] == [
        (tmp_path / "v/0.mp4", 1), (tmp_path / "v/1.mp4", 0)]
    assert annotations.class_names == ["left", "right"]


def test_path_label_errors_name_file_line_and_value(tmp_path):
    write(tmp_path / "classes.txt", "a\nb\n")
    with pytest.raises(ValueError, match=r"train\.csv:2: label 2 out of range \[0, 2\)"):
        read_annotations(write(tmp_path / "train.csv", "x.mp4 1\ny.mp4 2\n"), tmp_path)
    with pytest.raises(ValueError, match=r"bad\.csv:3: expected 'path label' .*got 'z\.mp4 one'"):
        read_annotations(write(tmp_path / "bad.csv", "x.mp4 1\ny.mp4 0\nz.mp4 one\n"), tmp_path, "csv")
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(ValueError, match=r"neg\.csv:1: label -1 out of range \[0, inf\)"):
        read_annotations(write(tmp_path / "neg.csv", "x.mp4 -1\n"), tmp_path)


def test_kinetics_pyslowfast_layout(tmp_path):
    listing = write(tmp_path / "train.csv", "abseiling/a.mp4 0\n")
    annotations = read_annotations(listing, tmp_path, "kinetics")
    assert annotations.format == "kinetics"
    assert annotations.entries == [VideoEntry(path=tmp_path / "abseiling/a.mp4", label=0, source="train.csv:1")]


# --- Kinetics official csv -----------------------------------------------------------------------------------------


def test_kinetics_official_uses_packaged_names_and_split_folder(tmp_path):
    (tmp_path / "train").mkdir()
    listing = write(tmp_path / "train.csv", "label,youtube_id,time_start,time_end,split\n"
                                            "air drumming,--Abc123,14,24,train\n"
                                            "abseiling,xyz,0,10,train\n")
    annotations = read_annotations(listing, tmp_path)
    assert annotations.format == "kinetics" and annotations.class_names == K400
    assert annotations.entries == [
        VideoEntry(path=tmp_path / "train/air drumming/--Abc123_000014_000024.mp4",
                   label=K400.index("air drumming"), source="train.csv:2"),
        VideoEntry(path=tmp_path / "train/abseiling/xyz_000000_000010.mp4", label=0, source="train.csv:3"),
    ]


def test_kinetics_official_root_as_split_folder_and_unknown_names(tmp_path):
    listing = write(tmp_path / "validate.csv", "label,youtube_id,time_start,time_end,split,is_cc\n"
                                               "zebra dancing,b,1.0,11.0,val,0\n"
                                               "ant walking,a,2,12,val,1\n")
    annotations = read_annotations(listing, tmp_path / "k700-val")  # no "val" folder: root is the split folder
    assert annotations.class_names == ["ant walking", "zebra dancing"]
    assert [(entry.path, entry.label) for entry in annotations.entries] == [
        (tmp_path / "k700-val/zebra dancing/b_000001_000011.mp4", 1),
        (tmp_path / "k700-val/ant walking/a_000002_000012.mp4", 0)]


def test_kinetics_official_errors(tmp_path):
    header = "label,youtube_id,time_start,time_end,split\n"
    with pytest.raises(ValueError, match=r"a\.csv:3: time_end must be whole seconds >= 0, got '1x'"):
        read_annotations(write(tmp_path / "a.csv", header + "abseiling,x,0,10,train\nabseiling,y,0,1x,train\n"))
    with pytest.raises(ValueError, match=r"b\.csv:2: expected 5 fields .*got 'abseiling,x,0'"):
        read_annotations(write(tmp_path / "b.csv", header + "abseiling,x,0\n"), format="kinetics")


# --- Something-Something v2 ----------------------------------------------------------------------------------------


def write_ssv2(folder: Path, items: list[dict]) -> Path:
    labels = {"Approaching something with your camera": "1", "Holding something next to something": "0"}
    write(folder / "something-something-v2-labels.json", json.dumps(labels))
    return write(folder / "something-something-v2-train.json", json.dumps(items, indent=1))


def test_ssv2_videos_and_frames(tmp_path):
    items = [{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
              "template": "Holding [something] next to [something]", "placeholders": ["potato", "bottle"]},
             {"id": "42", "label": "approaching cup with your camera",
              "template": "Approaching [something] with your camera", "placeholders": ["cup"]}]
    listing = write_ssv2(tmp_path, items)
    annotations = read_annotations(listing, tmp_path / "videos")
    assert annotations.format == "ssv2"
    assert annotations.class_names == ["Holding something next to something", "Approaching something with your camera"]
    assert annotations.entries == [
        VideoEntry(path=tmp_path / "videos/78687.webm", label=0, source="something-something-v2-train.json:1"),
        VideoEntry(path=tmp_path / "videos/42.webm", label=1, source="something-something-v2-train.json:2")]
    frames = read_annotations(listing, tmp_path / "frames", "ssv2", frames=True)
    assert [entry.path for entry in frames.entries] == [tmp_path / "frames/78687", tmp_path / "frames/42"]


def test_ssv2_errors(tmp_path):
    listing = write_ssv2(tmp_path, [{"id": "1", "template": "Holding [something] next to [something]"},
                                    {"id": "2", "template": "Dropping [something]"}])
    with pytest.raises(ValueError, match=r"train\.json:2: template 'Dropping something' is not in"):
        read_annotations(listing)
    test_list = write(tmp_path / "something-something-v2-test.json", json.dumps([{"id": "5"}]))
    with pytest.raises(ValueError, match=r"test\.json:1: expected an item with 'id' and 'template'"):
        read_annotations(test_list)
    other = tmp_path / "elsewhere"
    other.mkdir()
    alone = write(other / "train.json", "[]")
    with pytest.raises(FileNotFoundError, match=r"something-something-v2-labels\.json"):
        read_annotations(alone)
    assert read_annotations(alone, labels_file=tmp_path / "something-something-v2-labels.json").entries == []


# --- EPIC-KITCHENS-100 ---------------------------------------------------------------------------------------------


def test_epic_segments(tmp_path):
    listing = write(tmp_path / "EPIC_100_train.csv", EPIC_HEADER + "\n"
                    + epic_line("P01_01", "00:00:01.50", "00:00:03.00", 0, 4)
                    + epic_line("P02_107", "01:02:03.25", "01:02:04.00", 96, 299))
    annotations = read_annotations(listing, tmp_path / "epic")
    assert annotations.format == "epic"
    assert annotations.class_names == {"verb": class_names("epic_verbs"), "noun": class_names("epic_nouns")}
    assert annotations.entries == [
        VideoEntry(path=tmp_path / "epic/P01/videos/P01_01.MP4", label={"verb": 0, "noun": 4}, window=(1.5, 3.0),
                   source="EPIC_100_train.csv:2", segment=Segment(90, 180, 60.0)),  # 60 fps
        VideoEntry(path=tmp_path / "epic/P02/videos/P02_107.MP4", label={"verb": 96, "noun": 299},
                   window=(3723.25, 3724.0), source="EPIC_100_train.csv:3",
                   segment=Segment(186162, 186200, 50.0))]  # 50 fps; 186162.5 rounds half to even
    frames = read_annotations(listing, tmp_path / "epic", "epic", frames=True)
    assert frames.entries[0].path == tmp_path / "epic/P01/rgb_frames/P01_01"


def test_epic_timestamps_count_hundredths(tmp_path):
    """As Epic-Kitchens' code reads them: the digits after the dot are hundredths, whatever their number."""
    listing = write(tmp_path / "E.csv", EPIC_HEADER + "\n" + epic_line("P01_01", "00:01:02.5", "00:01:02.07", 0, 0))
    entry = read_annotations(listing).entries[0]
    assert entry.window == (62.05, 62.07)
    assert entry.segment == Segment(round(62.05 * 60), round(62.07 * 60), 60.0) == Segment(3723, 3724, 60.0)


@pytest.mark.parametrize(("line", "message"), [
    (epic_line("P01_01", "00:00:01.00", "00:00:02.00", 97, 0), r"E\.csv:2: verb_class 97 out of range \[0, 97\)"),
    (epic_line("P01_01", "00:00:01.00", "00:00:02.00", 0, 300), r"E\.csv:2: noun_class 300 out of range \[0, 300\)"),
    (epic_line("P01_01", "1.5", "00:00:02.00", 0, 0), r"E\.csv:2: expected a timestamp HH:MM:SS\.ss, got '1\.5'"),
    (epic_line("P01_01", "00:00:03.00", "00:00:02.00", 0, 0), r"E\.csv:2: stop_timestamp 00:00:02\.00 is before"),
    (epic_line("P01_01", "00:00:01.00", "00:00:02.00", "x", 0), r"E\.csv:2: verb_class must be an integer, got 'x'"),
])
def test_epic_errors(tmp_path, line, message):
    with pytest.raises(ValueError, match=message):
        read_annotations(write(tmp_path / "E.csv", EPIC_HEADER + "\n" + line))


def test_epic_test_csv_without_labels(tmp_path):
    listing = write(tmp_path / "EPIC_100_test_timestamps.csv",
                    "narration_id,participant_id,video_id,start_timestamp,stop_timestamp\n")
    with pytest.raises(ValueError, match=r"EPIC_100_test_timestamps\.csv:1: missing column\(s\) verb_class"):
        read_annotations(listing)


# --- folders, guessing, missing files ------------------------------------------------------------------------------


def test_folder_per_class(tmp_path):
    for name in ("walk/a.mp4", "walk/sub/b.MKV", "walk/notes.txt", "run/c.webm", ".hidden/d.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    annotations = read_annotations(tmp_path)
    assert annotations.format == "folder" and annotations.class_names == ["run", "walk"]
    assert [(entry.path, entry.label, entry.source) for entry in annotations.entries] == [
        (tmp_path / "run/c.webm", 0, "run/c.webm"), (tmp_path / "walk/a.mp4", 1, "walk/a.mp4"),
        (tmp_path / "walk/sub/b.MKV", 1, "walk/sub/b.MKV")]


def test_guess_format(tmp_path):
    assert guess_format(tmp_path) == "folder"
    assert guess_format(write(tmp_path / "list.txt", "a.mp4 1\n")) == "csv"
    assert guess_format(write(tmp_path / "h.csv", "path,label\na.mp4,1\n")) == "csv"
    assert guess_format(write(tmp_path / "k.csv", "label,youtube_id,time_start,time_end,split\n")) == "kinetics"
    assert guess_format(write(tmp_path / "e.csv", EPIC_HEADER + "\n")) == "epic"
    assert guess_format(write(tmp_path / "s.json", "[]")) == "ssv2"
    with pytest.raises(ValueError, match=r"odd\.txt: cannot tell the annotation format .*'hello world'"):
        guess_format(write(tmp_path / "odd.txt", "hello world\n"))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_annotations(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="format must be one of"):
        read_annotations(write(tmp_path / "a.csv", "a.mp4 0\n"), format="hmdb")


def test_bytes_that_are_not_utf8_are_named_with_their_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"a.mp4 0\nb.mp4 1\ncaf\xe9.mp4 0\n")
    with pytest.raises(ValueError, match=r"train.csv:3: not UTF-8 text \(byte 0xe9 at column 4\)"):
        read_annotations(path)
