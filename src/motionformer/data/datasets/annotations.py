"""Annotation files of the supported datasets, read into lists of ``VideoEntry``.

Formats (``format=``), as the datasets publish them:

- ``kinetics``: PySlowFast lists (``path label`` per line, integer label, no header) or the official csv
  (header ``label,youtube_id,time_start,time_end,split[,is_cc]``, class names as labels).
- ``ssv2``: the Something-Something-v2 train/validation json list, with the labels json beside it.
- ``epic``: the EPIC-KITCHENS-100 csv (``EPIC_100_train.csv`` ...): one segment of a long video a line.
- ``csv``: ``path label`` lines, space or comma separated, optional header; class names from a ``classes.txt``
  beside the file. This is also PySlowFast's Kinetics layout and what ``data synthetic`` writes.
- ``folder``: a folder per class, every video file inside it (recursively) an entry of that class.
- ``auto``: guessed from the file (see ``guess_format``).

Reading never looks at the videos (``motionformer.data.check`` does), so that 240k-line lists read in about a
second. Malformed lines and labels out of range raise ValueError naming the file, the line and the value.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.sampling import Segment
from motionformer.models.class_names import class_names as packaged_class_names

FORMATS = ("auto", "kinetics", "ssv2", "epic", "csv", "folder")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
EPIC_COLUMNS = ("participant_id", "video_id", "start_timestamp", "stop_timestamp", "verb_class", "noun_class")
EPIC_NUM_VERBS, EPIC_NUM_NOUNS = 97, 300
SSV2_LABELS_FILE = "something-something-v2-labels.json"
CLASSES_FILE = "classes.txt"

_TIMESTAMP = re.compile(r"(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)")


@dataclass(frozen=True)
class Annotations:
    """The entries of one annotation file, the names of their classes, and the format it was read as.

    ``class_names`` is a list (element i names class i), ``{"verb": [...], "noun": [...]}`` for Epic-Kitchens,
    or None when the file does not say (a ``path label`` list without ``classes.txt``).
    """

    entries: list[VideoEntry]
    class_names: list[str] | dict[str, list[str]] | None
    format: str


def read_annotations(path: str | os.PathLike, root: str | os.PathLike | None = None, format: str = "auto", *,
                     labels_file: str | os.PathLike | None = None, frames: bool = False) -> Annotations:
    """Read an annotation file (or, for ``folder``, a dataset folder) into entries whose paths are under ``root``.

    ``root`` defaults to the annotation file's folder (for ``folder``: ``path`` itself, and ``root`` is not used).
    ``labels_file`` is the SSv2 labels json (default: ``something-something-v2-labels.json`` beside ``path``).
    ``frames=True`` points SSv2 and Epic-Kitchens entries at folders of extracted frames instead of video files.

    Raises FileNotFoundError for a missing annotation or labels file, ValueError for an unknown format, a
    malformed line or a label out of range ("train.csv:17: label 400 out of range [0, 400)").
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such annotation file", str(path))
    try:
        if format == "auto":
            format = guess_format(path)
        if format == "folder":
            return read_folder(path)
        root = path.parent if root is None else Path(root)
        if format == "kinetics":
            return read_kinetics(path, root)
        if format == "ssv2":
            return read_ssv2(path, root, labels_file=labels_file, frames=frames)
        if format == "epic":
            return read_epic(path, root, frames=frames)
        return read_path_label_csv(path, root)
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error


def _not_utf8(path: Path, error: UnicodeDecodeError) -> ValueError:
    """The first line of ``path`` that is not UTF-8, named with its bad byte."""
    if path.is_file():
        with path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return ValueError(f"{path}:{number}: not UTF-8 text (byte 0x{line[bad.start]:02x} at column "
                                      f"{bad.start + 1}); save the file as UTF-8")
    return ValueError(f"{path}: not UTF-8 text ({error.reason}); save the file as UTF-8")


def guess_format(path: str | os.PathLike) -> str:
    """The format of an annotation file from its content: ``ssv2``, ``epic``, ``kinetics``, ``csv`` or ``folder``.

    A directory is ``folder``; json is ``ssv2``; a header with ``narration_id`` is ``epic``; a header starting
    ``label,youtube_id`` is ``kinetics`` (the official csv); ``path label`` lines are ``csv`` (which is also
    PySlowFast's Kinetics layout). Raises ValueError when none fits.
    """
    path = Path(path)
    if path.is_dir():
        return "folder"
    with path.open(encoding="utf-8-sig") as file:
        head = file.read(4096)
    first = head.lstrip()[:1]
    if path.suffix.lower() == ".json" or first in ("[", "{"):
        return "ssv2"
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    header = lines[0].replace(" ", "") if lines else ""
    if "narration_id" in header.split(","):
        return "epic"
    if header.startswith("label,youtube_id"):
        return "kinetics"
    if any(_split_path_label(line) for line in lines[:2]):
        return "csv"
    shown = lines[0][:80] if lines else "(empty)"
    raise ValueError(f"{path}: cannot tell the annotation format from its first line {shown!r}; "
                     f"pass one of {', '.join(FORMATS[1:])}")


def read_path_label_csv(path: str | os.PathLike, root: str | os.PathLike) -> Annotations:
    """``path label`` lines (space or comma separated, optional header line): video ``root/path``, integer label.

    Class names come from ``classes.txt`` beside the file (one name a line), which also bounds the labels;
    without it, class names are None and labels must only be >= 0.
    """
    path, root = Path(path), Path(root)
    classes_file = path.parent / CLASSES_FILE
    names = _read_lines(classes_file) if classes_file.is_file() else None
    num_classes = len(names) if names is not None else None
    entries = []
    first = True
    with path.open(encoding="utf-8-sig") as file:
        for number, line in enumerate(file, start=1):
            text = line.strip()
            if not text:
                continue
            fields = _split_path_label(text)
            is_header, first = first and "label" in text.lower(), False
            if fields is None:
                if is_header:
                    continue
                raise ValueError(f"{path.name}:{number}: expected 'path label' (integer label), got {text!r}")
            video, label = fields
            _check_label(label, num_classes, path, number)
            entries.append(VideoEntry(path=root / video, label=label, source=f"{path.name}:{number}"))
    return Annotations(entries=entries, class_names=names, format="csv")


def read_kinetics(path: str | os.PathLike, root: str | os.PathLike) -> Annotations:
    """Kinetics-400/600: a PySlowFast ``path label`` list or the official csv (see ``read_kinetics_official``)."""
    path = Path(path)
    with path.open(encoding="utf-8-sig") as file:
        header = file.readline().replace(" ", "").strip()
    if header.startswith("label,youtube_id"):
        return read_kinetics_official(path, root)
    annotations = read_path_label_csv(path, root)
    return Annotations(entries=annotations.entries, class_names=annotations.class_names, format="kinetics")


def read_kinetics_official(path: str | os.PathLike, root: str | os.PathLike) -> Annotations:
    """The official Kinetics csv: ``label,youtube_id,time_start,time_end,split[,is_cc]``, the label a class name.

    Video ``<root>/<split>/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4``; when ``root`` has no
    ``<split>`` folder, ``root`` is taken as the split folder (``<root>/<label>/...``). The class index is the
    position of the name in the packaged Kinetics-400 (or else -600) list when all names are in it, otherwise
    in the sorted list of the names the file holds.
    """
    path, root = Path(path), Path(root)
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        if tuple(header[:len(KINETICS_COLUMNS)]) != KINETICS_COLUMNS:
            raise ValueError(f"{path.name}:1: expected the header {','.join(KINETICS_COLUMNS)}[,is_cc], "
                             f"got {','.join(header)!r}")
        for row in reader:
            number = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path.name}:{number}: expected {len(header)} fields ({','.join(header)}), "
                                 f"got {','.join(row)!r}")
            label, youtube_id, start, stop, split = (field.strip() for field in row[:len(KINETICS_COLUMNS)])
            times = (_whole_seconds(start, "time_start", path, number), _whole_seconds(stop, "time_end", path, number))
            rows.append((label, youtube_id, times, split, number))
    names = _kinetics_class_names({row[0] for row in rows})
    index = {name: i for i, name in enumerate(names)}
    split_folders: dict[str, Path] = {}
    entries = []
    for label, youtube_id, (start, stop), split, number in rows:
        if split not in split_folders:
            split_folders[split] = root / split if (root / split).is_dir() else root
        video = split_folders[split] / f"{label}/{youtube_id}_{start:06d}_{stop:06d}.mp4"
        entries.append(VideoEntry(path=video, label=index[label], source=f"{path.name}:{number}"))
    return Annotations(entries=entries, class_names=names, format="kinetics")


def read_ssv2(path: str | os.PathLike, root: str | os.PathLike, *, labels_file: str | os.PathLike | None = None,
              frames: bool = False) -> Annotations:
    """Something-Something-v2: the train/validation json list and the labels json (template -> class index).

    Video ``<root>/<id>.webm``, or with ``frames`` the frame folder ``<root>/<id>``. An item's class is the labels
    file's index of its ``template`` with ``[`` and ``]`` removed. Entry sources and messages give the 1-based
    position of the item in the list in place of a line number.
    """
    path, root = Path(path), Path(root)
    labels_path = path.parent / SSV2_LABELS_FILE if labels_file is None else Path(labels_file)
    if not labels_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such SSv2 labels file (pass labels_file)", str(labels_path))
    labels = _read_json(labels_path)
    if not isinstance(labels, dict):
        raise ValueError(f"{labels_path.name}: expected an object {{template: class index}}, "
                         f"got {type(labels).__name__}")
    index: dict[str, int] = {}
    for template, value in labels.items():
        try:
            index[template] = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{labels_path.name}: class index of {template!r} is not an integer: {value!r}") from None
    names = [""] * len(index)
    for template, label in index.items():
        if not 0 <= label < len(index) or names[label]:
            raise ValueError(f"{labels_path.name}: class index {label} of {template!r} is out of range "
                             f"[0, {len(index)}) or repeated")
        names[label] = template
    items = _read_json(path)
    if not isinstance(items, list):
        what = "the labels file" if isinstance(items, dict) else type(items).__name__
        raise ValueError(f"{path.name}: expected the list of videos (train or validation json), got {what}")
    entries = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise ValueError(f"{path.name}:{number}: expected an item with 'id' and 'template' (the test list has "
                             f"no labels), got {str(item)[:200]!r}")
        template = str(item["template"]).replace("[", "").replace("]", "")
        if template not in index:
            raise ValueError(f"{path.name}:{number}: template {template!r} is not in {labels_path.name}")
        video_id = str(item["id"])
        video = root / video_id if frames else root / f"{video_id}.webm"
        entries.append(VideoEntry(path=video, label=index[template], source=f"{path.name}:{number}"))
    return Annotations(entries=entries, class_names=names, format="ssv2")


def read_epic(path: str | os.PathLike, root: str | os.PathLike, *, frames: bool = False) -> Annotations:
    """EPIC-KITCHENS-100 csv: a segment [start_timestamp, stop_timestamp] of a long video a line.

    Video ``<root>/<participant_id>/videos/<video_id>.MP4``, or with ``frames`` the frame folder
    ``<root>/<participant_id>/rgb_frames/<video_id>``. Label ``{"verb": verb_class, "noun": noun_class}`` in
    [0, 97) and [0, 300); window in seconds from the ``HH:MM:SS.ff`` timestamps (see ``_timestamp``), and the
    segment in frame numbers as Epic-Kitchens counts them: ``round(seconds * fps)`` (half to even) with ``fps``
    50 for the EPIC-100 extension's videos (three digits after the underscore: ``P01_101``), else 60.
    """
    path, root = Path(path), Path(root)
    entries = []
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in EPIC_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{path.name}:1: missing column(s) {', '.join(missing)} (the test csv has no labels); "
                             f"got {','.join(header)!r}")
        column = {name: header.index(name) for name in EPIC_COLUMNS}
        for row in reader:
            number = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path.name}:{number}: expected {len(header)} fields, got {','.join(row)!r}")
            participant, video_id, start, stop, verb, noun = (row[column[name]].strip() for name in EPIC_COLUMNS)
            window = (_timestamp(start, path, number), _timestamp(stop, path, number))
            if window[1] < window[0]:
                raise ValueError(f"{path.name}:{number}: stop_timestamp {stop} is before start_timestamp {start}")
            label = {"verb": _int_field(verb, "verb_class", path, number),
                     "noun": _int_field(noun, "noun_class", path, number)}
            _check_label(label["verb"], EPIC_NUM_VERBS, path, number, what="verb_class")
            _check_label(label["noun"], EPIC_NUM_NOUNS, path, number, what="noun_class")
            folder = root / participant
            video = folder / "rgb_frames" / video_id if frames else folder / "videos" / f"{video_id}.MP4"
            fps = _epic_fps(video_id)
            segment = Segment(round(window[0] * fps), round(window[1] * fps), fps)
            entries.append(VideoEntry(path=video, label=label, window=window, source=f"{path.name}:{number}",
                                      segment=segment))
    names = {"verb": packaged_class_names("epic_verbs"), "noun": packaged_class_names("epic_nouns")}
    return Annotations(entries=entries, class_names=names, format="epic")


def read_folder(root: str | os.PathLike) -> Annotations:
    """A folder per class under ``root`` (class names: the sorted folder names); every video file in it, recursively.

    Video files are those ending in one of ``VIDEO_SUFFIXES`` (any case); hidden files and folders are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such dataset folder", str(root))
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    entries = []
    for label, name in enumerate(names):
        for folder, subfolders, files in os.walk(root / name):
            subfolders[:] = sorted(sub for sub in subfolders if not sub.startswith("."))
            for file in sorted(files):
                if file.lower().endswith(VIDEO_SUFFIXES) and not file.startswith("."):
                    video = Path(folder) / file
                    entries.append(VideoEntry(path=video, label=label, source=video.relative_to(root).as_posix()))
    return Annotations(entries=entries, class_names=names, format="folder")


def _split_path_label(text: str) -> tuple[str, int] | None:
    """``(path, label)`` of a stripped ``path label`` line, or None when the line is not of that form.

    The label is the last field, after a comma or white space: paths may hold spaces and commas.
    """
    for separator in (",", None):
        parts = text.rsplit(separator, 1)
        if len(parts) == 2:
            video, label = parts[0].strip(), parts[1].strip()
            if video and (label.isdigit() or (label[:1] == "-" and label[1:].isdigit())):
                return video, int(label)
    return None


def _read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig") as file:
        return [line.strip() for line in file if line.strip()]


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such annotation file", str(path))
    with path.open(encoding="utf-8") as file:
        try:
            return json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path.name}:{error.lineno}: not valid JSON: {error.msg}") from None


def _check_label(label: int, num_classes: int | None, path: Path, number: int, what: str = "label") -> None:
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = num_classes if num_classes is not None else "inf"
        raise ValueError(f"{path.name}:{number}: {what} {label} out of range [0, {bound})")


def _int_field(text: str, what: str, path: Path, number: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path.name}:{number}: {what} must be an integer, got {text!r}") from None


def _whole_seconds(text: str, what: str, path: Path, number: int) -> int:
    """A Kinetics time_start/time_end: whole seconds, written ``14`` or ``14.0``."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (seconds >= 0 and seconds.is_integer()):
        raise ValueError(f"{path.name}:{number}: {what} must be whole seconds >= 0, got {text!r}")
    return int(seconds)


def _timestamp(text: str, path: Path, number: int) -> float:
    """``HH:MM:SS.ff`` in seconds, the digits after the dot counted as hundredths as Epic-Kitchens' code counts
    them (``00:00:01.5`` is 1.05 s; the published files always write two digits)."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{path.name}:{number}: expected a timestamp HH:MM:SS.ss, got {text!r}")
    hours, minutes, seconds = match.groups()
    whole, _, hundredths = seconds.partition(".")
    return float(int(hours) * 3600 + int(minutes) * 60 + int(whole)) + (int(hundredths) / 100 if hundredths else 0.0)


def _epic_fps(video_id: str) -> float:
    """50 for the EPIC-100 extension's videos (``P01_101``: three digits after the underscore), else 60."""
    return 50.0 if len(video_id.rpartition("_")[2]) == 3 else 60.0


def _kinetics_class_names(found: set[str]) -> list[str]:
    """The packaged Kinetics-400 or -600 list when it holds every name found, else the sorted names found."""
    for name in ("kinetics400", "kinetics600"):
        names = packaged_class_names(name)
        if len(found) <= len(names) and found <= set(names):
            return names
    return sorted(found)
