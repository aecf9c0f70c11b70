"""``data check`` on tiny real videos and broken files of each kind."""

from __future__ import annotations

import json

import pytest

from motionformer.data.check import check_videos, run_check
from motionformer.data.datasets import read_annotations
from tests.data.conftest import make_audio_only, make_video

EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A root with two good videos and one broken file of each kind, and a ``path label`` list of them all."""
    root = tmp_path_factory.mktemp("check")
    make_video(root / "good0.mp4", 8, size=(32, 32), gop=4)
    make_video(root / "good1.mkv", 8, size=(32, 32), gop=4)
    (root / "empty.mp4").write_bytes(b"")
    truncated = make_video(root / "truncated.mp4", 8, size=(32, 32)).read_bytes()
    (root / "truncated.mp4").write_bytes(truncated[:len(truncated) // 2])
    (root / "text.mp4").write_bytes(b"this is not a video\n" * 20)
    make_audio_only(root / "audio.m4a", seconds=0.1)
    names = ["good0.mp4", "good1.mkv", "missing.mp4", "empty.mp4", "truncated.mp4", "text.mp4", "audio.m4a"]
    (root / "list.csv").write_text("".join(f"{name} 0\n" for name in names))
    return root


def test_report_names_each_broken_file_with_its_reason(dataset):
    report = check_videos(read_annotations(dataset / "list.csv"), workers=2, progress=False)
    assert (report.checked, report.ok) == (7, 2)
    reasons = {failure["path"]: failure["reason"] for failure in report.failed}
    assert list(reasons) == [str(dataset / name) for name in
                             ("missing.mp4", "empty.mp4", "truncated.mp4", "text.mp4", "audio.m4a")]
    assert reasons[str(dataset / "missing.mp4")].startswith("missing")
    assert "empty" in reasons[str(dataset / "empty.mp4")]
    assert reasons[str(dataset / "audio.m4a")] == "no video stream"
    assert all(reasons.values())
    assert json.loads(report.to_json()) == {"checked": 7, "ok": 2, "failed": report.failed}


def test_run_check_json_and_exit_status(dataset, capsys):
    assert run_check(dataset / "list.csv", dataset, json_output=True) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result) == {"checked", "ok", "failed"} and (result["checked"], result["ok"]) == (7, 2)
    assert all(set(failure) == {"path", "reason"} for failure in result["failed"])
    assert result["failed"][0]["path"] == "missing.mp4"  # as listed in the annotations
    assert "checked 7/7 (5 failed)" in captured.err  # the progress line

    (dataset / "good.csv").write_text("good0.mp4 0\ngood1.mkv 1\n")
    assert run_check(dataset / "good.csv", format="csv") == 0
    assert "checked 2 videos, 2 ok, 0 failed" in capsys.readouterr().out


def test_run_check_summary_lists_failures(dataset, capsys):
    assert run_check(dataset / "list.csv", dataset) == 1
    out = capsys.readouterr().out
    assert "(csv): checked 7 videos, 2 ok, 5 failed" in out
    assert "\n  audio.m4a: no video stream" in out  # paths as listed


def test_windows_share_one_opening_and_must_start_inside_the_video(tmp_path):
    videos = tmp_path / "P01" / "videos"
    videos.mkdir(parents=True)
    for name in ("P01_01.MP4", "P01_02.MP4"):
        make_video(videos / name, 30, size=(32, 32), gop=10)  # 1 s at 30 fps
    lines = [f"P01_0{video}_{k},P01,P01_0{video},00:00:00.00,{start},{stop},1,2,open tap,open,0,tap,0,['tap'],[0]"
             for k, (video, start, stop) in enumerate([(1, "00:00:00.10", "00:00:00.50"),
                                                       (1, "00:00:00.60", "00:00:00.90"),
                                                       (2, "00:00:00.20", "00:00:00.40"),
                                                       (2, "00:00:05.00", "00:00:06.00")])]
    (tmp_path / "EPIC_100_validation.csv").write_text("\n".join([EPIC_HEADER, *lines]) + "\n")
    report = check_videos(read_annotations(tmp_path / "EPIC_100_validation.csv"), progress=False)
    assert (report.checked, report.ok) == (2, 1)
    assert report.failed == [{"path": str(tmp_path / "P01/videos/P01_02.MP4"),
                              "reason": "window 5.00-6.00 s (EPIC_100_validation.csv:5) starts after the end of the "
                                        "video (1.00 s)"}]


def test_missing_annotation_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.csv"):
        run_check(tmp_path / "absent.csv", tmp_path)


def test_data_check_command(dataset, capsys):
    from motionformer.cli import main

    assert main(["data", "check", str(dataset / "list.csv"), "--root", str(dataset), "--json", "--workers", "2"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] == 2
    (dataset / "good.csv").write_text("good0.mp4 0\n")
    assert main(["data", "check", str(dataset / "good.csv")]) == 0
    assert main(["data", "check", str(dataset / "absent.csv")]) == 2


def _claim_longer_duration(path, factor: float) -> None:
    """Multiply the Matroska segment's stated Duration (element 0x4489, a float) by ``factor`` in place."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89")
    width = data[at + 2] & 0x7F
    fmt = ">d" if width == 8 else ">f"
    (stated,) = struct.unpack(fmt, data[at + 3:at + 3 + width])
    data[at + 3:at + 3 + width] = struct.pack(fmt, stated * factor)
    path.write_bytes(data)


def test_a_stated_duration_past_the_stream_fails(tmp_path):
    make_video(tmp_path / "honest.mkv", 30, size=(32, 32), gop=10)
    _claim_longer_duration(make_video(tmp_path / "liar.mkv", 30, size=(32, 32), gop=10), 1000)
    (tmp_path / "list.csv").write_text("honest.mkv 0\nliar.mkv 0\n")
    report = check_videos(read_annotations(tmp_path / "list.csv"), progress=False)
    assert (report.checked, report.ok) == (2, 1)
    assert report.failed == [{"path": str(tmp_path / "liar.mkv"),
                              "reason": "the container states a duration of 1000.00 s but its video stream ends "
                                        "at 1.00 s"}]


def test_an_interrupted_check_reports_what_it_checked(dataset, capsys, monkeypatch):
    import motionformer.data.check as check

    real = check._check_video
    calls = []

    def interrupted_at_the_fourth(path, entries, threads):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, entries, threads)

    monkeypatch.setattr(check, "_check_video", interrupted_at_the_fourth)
    assert run_check(dataset / "list.csv", dataset) == 130
    out = capsys.readouterr().out
    assert "  missing.mp4: missing" in out  # found before the interrupt, written as found
    assert "interrupted: checked 3 videos, 2 ok, 1 failed of 7 listed" in out

    calls.clear()
    assert run_check(dataset / "list.csv", dataset, json_output=True) == 130
    assert json.loads(capsys.readouterr().out) == {"checked": 3, "ok": 2, "failed": [
        {"path": "missing.mp4", "reason": "missing: no such file or frame folder"}], "interrupted": True, "total": 7}


@pytest.mark.slow
def test_sigterm_stops_data_check_with_a_report(tmp_path):
    import signal
    import subprocess
    import sys

    for k in range(3):
        make_video(tmp_path / f"v{k}.mp4", 8, size=(32, 32))
    (tmp_path / "list.csv").write_text("absent.mp4 0\n" + "".join(f"slow{k}.mp4 0\n" for k in range(10000)))
    for k in range(10000):
        (tmp_path / f"slow{k}.mp4").symlink_to(tmp_path / f"v{k % 3}.mp4")
    process = subprocess.Popen([sys.executable, "-m", "motionformer", "data", "check", str(tmp_path / "list.csv")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()  # the first failure, written as soon as the check has begun
    assert first.startswith("  absent.mp4: missing")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted: checked" in out and "of 10001 listed" in out
