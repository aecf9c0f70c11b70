"""The model zoo: the authors' released checkpoints by name, in the style of torchvision's weight enums.

``ReleasedWeights`` has one member per released file (``ReleasedWeights.K400_MFORMER_B``); each value is a
``Weights`` entry: its name (``k400_mformer_b``), file name, URL, the authors' reported accuracy, its architecture
(a ``create_model`` name), the input it expects (``InputSpec``, with class names) and its dataset. Files live in
the weights folder ``weights_home()`` (``$MOTIONFORMER_HOME``, default ``~/.cache/motionformer``); nothing is
downloaded unless asked (``download`` or ``resolve(..., download=True)``): then the file is written atomically
and its SHA-256 is logged and recorded beside it in ``FILE.sha256`` (``sha256sum`` format). Downloads come from
``$MOTIONFORMER_WEIGHTS_URL`` when set (a mirror), else from the authors' server (``RELEASE_URL``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from motionformer.io import atomic_write
from motionformer.models.class_names import class_names
from motionformer.models.spec import ClassNames, InputSpec

log = logging.getLogger(__name__)

RELEASE_URL = "https://dl.fbaipublicfiles.com/motionformer"
HOME_VARIABLE = "MOTIONFORMER_HOME"
URL_VARIABLE = "MOTIONFORMER_WEIGHTS_URL"
_CHUNK = 1 << 20


def weights_home() -> Path:
    """The weights folder: ``$MOTIONFORMER_HOME``, else ``~/.cache/motionformer``."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "motionformer").expanduser()


@dataclasses.dataclass(frozen=True)
class Weights:
    """One released file. ``accuracy``: the authors' reported numbers in percent (``top1``/``top5``; Epic-Kitchens
    ``action_top1``/``noun_top1``); ``classes``: the packaged class list(s) of its dataset."""

    name: str
    file: str
    model: str
    architecture: str
    dataset: str
    accuracy: dict[str, float]
    spec: InputSpec
    classes: str | tuple[str, str]

    @property
    def url(self) -> str:
        """Where the file is downloaded from (the mirror of ``$MOTIONFORMER_WEIGHTS_URL`` when set)."""
        return f"{(os.environ.get(URL_VARIABLE) or RELEASE_URL).rstrip('/')}/{self.file}"

    @property
    def input(self) -> InputSpec:
        """What the weights expect, with their class names."""
        return dataclasses.replace(self.spec, class_names=self.class_names)

    @property
    def class_names(self) -> ClassNames:
        if isinstance(self.classes, tuple):
            return {"verb": class_names(self.classes[0]), "noun": class_names(self.classes[1])}
        return class_names(self.classes)

    def path(self, home: str | os.PathLike | None = None) -> Path:
        """Where the file is (or would be) in the weights folder ``home`` (default ``weights_home()``)."""
        return Path(home or weights_home()) / self.file

    def describe_accuracy(self) -> str:
        """The reported numbers as text: ``79.7 / 94.2`` (top-1 / top-5) or ``action 43.1, noun 56.5``."""
        if "top1" in self.accuracy:
            return f"{self.accuracy['top1']:.1f} / {self.accuracy['top5']:.1f}"
        return f"action {self.accuracy['action_top1']:.1f}, noun {self.accuracy['noun_top1']:.1f}"


def _kinetics(frames: int, rate: int, crop: int) -> InputSpec:
    return InputSpec(num_frames=frames, sampling_rate=rate, crop_size=crop, num_clips=10, num_crops=3)


def _ssv2(frames: int, crop: int) -> InputSpec:
    return InputSpec(num_frames=frames, crop_size=crop, sampling_rate=4 if frames == 16 else 3, num_clips=1,
                     num_crops=3, channel_order="bgr", sampling="segments")


def _epic(frames: int, rate: int, crop: int) -> InputSpec:
    return InputSpec(num_frames=frames, sampling_rate=rate, crop_size=crop, num_clips=10, num_crops=3,
                     channel_order="bgr")


def _entry(name: str, file: str, model: str, architecture: str, accuracy: tuple[float, float],
           spec: InputSpec) -> Weights:
    dataset = {"k400": "kinetics400", "k600": "kinetics600", "ssv2": "ssv2", "epic": "epic-kitchens-100"}[
        name.split("_")[0]]
    if dataset == "epic-kitchens-100":
        return Weights(name, file, model, architecture, dataset,
                       {"action_top1": accuracy[0], "noun_top1": accuracy[1]}, spec, ("epic_verbs", "epic_nouns"))
    classes = dataset.replace("-", "")
    return Weights(name, file, model, architecture, dataset, {"top1": accuracy[0], "top5": accuracy[1]}, spec,
                   classes)


class ReleasedWeights(enum.Enum):
    """The authors' released checkpoints (their README, 2021); ``.value`` is the ``Weights`` entry."""

    K400_JOINT_B = _entry("k400_joint_b", "k400_joint_224_16x4.pyth", "joint", "joint_b", (79.2, 94.2),
                          _kinetics(16, 4, 224))
    K400_DIVIDED_B = _entry("k400_divided_b", "k400_divided_224_16x4.pyth", "divided", "divided_b", (78.5, 93.8),
                            _kinetics(16, 4, 224))
    K400_MFORMER_B = _entry("k400_mformer_b", "k400_motionformer_224_16x4.pyth", "Motionformer", "mformer_b",
                            (79.7, 94.2), _kinetics(16, 4, 224))
    K400_MFORMER_HR = _entry("k400_mformer_hr", "k400_motionformer_336_16x8.pyth", "Motionformer-HR", "mformer_hr",
                             (81.1, 95.2), _kinetics(16, 8, 336))
    K400_MFORMER_L = _entry("k400_mformer_l", "k400_motionformer_224_32x3.pyth", "Motionformer-L", "mformer_l",
                            (80.2, 94.8), _kinetics(32, 3, 224))
    K600_MFORMER_B = _entry("k600_mformer_b", "k600_motionformer_224_16x4.pyth", "Motionformer", "mformer_b",
                            (81.6, 95.6), _kinetics(16, 4, 224))
    K600_MFORMER_HR = _entry("k600_mformer_hr", "k600_motionformer_336_16x8.pyth", "Motionformer-HR", "mformer_hr",
                             (82.7, 96.1), _kinetics(16, 8, 336))
    K600_MFORMER_L = _entry("k600_mformer_l", "k600_motionformer_224_32x3.pyth", "Motionformer-L", "mformer_l",
                            (82.2, 96.0), _kinetics(32, 3, 224))
    SSV2_JOINT_B = _entry("ssv2_joint_b", "ssv2_joint_224_16x4.pyth", "joint", "joint_b", (64.0, 88.4),
                          _ssv2(16, 224))
    SSV2_DIVIDED_B = _entry("ssv2_divided_b", "ssv2_divided_224_16x4.pyth", "divided", "divided_b", (64.2, 88.6),
                            _ssv2(16, 224))
    SSV2_MFORMER_B = _entry("ssv2_mformer_b", "ssv2_motionformer_224_16x4.pyth", "Motionformer", "mformer_b",
                            (66.5, 90.1), _ssv2(16, 224))
    SSV2_MFORMER_HR = _entry("ssv2_mformer_hr", "ssv2_motionformer_336_16x4.pyth", "Motionformer-HR", "mformer_hr",
                             (67.1, 90.6), _ssv2(16, 336))
    SSV2_MFORMER_L = _entry("ssv2_mformer_l", "ssv2_motionformer_224_32x3.pyth", "Motionformer-L", "mformer_l",
                            (68.1, 91.2), _ssv2(32, 224))
    EPIC_MFORMER_B = _entry("epic_mformer_b", "ek_motionformer_224_16x4.pyth", "Motionformer", "mformer_b",
                            (43.1, 56.5), _epic(16, 4, 224))
    EPIC_MFORMER_HR = _entry("epic_mformer_hr", "ek_motionformer_336_16x4.pyth", "Motionformer-HR", "mformer_hr",
                             (44.5, 58.5), _epic(16, 4, 336))
    EPIC_MFORMER_L = _entry("epic_mformer_l", "ek_motionformer_224_32x3.pyth", "Motionformer-L", "mformer_l",
                            (44.1, 57.6), _epic(32, 3, 224))


def list_weights() -> list[str]:
    """The zoo's entry names, in the order of ``ReleasedWeights``."""
    return [member.value.name for member in ReleasedWeights]


def get_weights(name: str) -> Weights:
    """The zoo entry ``name`` (``k400_mformer_b``; the member name ``K400_MFORMER_B`` works too)."""
    for member in ReleasedWeights:
        if name in (member.value.name, member.name):
            return member.value
    close = difflib.get_close_matches(name, list_weights(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown released weights {name!r}{hint} (see 'motionformer weights')")


def is_zoo_name(value: str | os.PathLike) -> bool:
    """Whether ``value`` names a zoo entry rather than a file (an existing file of that name wins)."""
    text = str(value)
    return text in list_weights() and not Path(text).exists()


def resolve(value: str | os.PathLike, *, download: bool = False, home: str | os.PathLike | None = None) -> Path:
    """The file of a checkpoint argument: a zoo name becomes its file in the weights folder (downloaded first when
    ``download``), anything else is a path.

    Raises FileNotFoundError naming the URL and the exact path to put the file at when a zoo file is absent.
    """
    if not is_zoo_name(value):
        return Path(value)
    entry = get_weights(str(value))
    path = entry.path(home)
    if path.is_file():
        return path
    if download:
        return download_weights(entry.name, home=home)
    raise FileNotFoundError(f"{entry.name}: {path} is absent; run 'motionformer weights download {entry.name}' "
                            f"(or download {entry.url} and put it at {path})")


def _fetch(url: str, temp: str, label: str) -> str:
    """Stream ``url`` into the file ``temp`` with a progress bar; returns its SHA-256 (hex)."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(temp, "wb") as stream:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as bar:
            while chunk := response.read(_CHUNK):
                stream.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def download_weights(name: str, *, home: str | os.PathLike | None = None) -> Path:
    """Download the zoo entry ``name`` into the weights folder (atomically) and record its SHA-256 in
    ``FILE.sha256``; returns the file's path.

    Raises ConnectionError naming the URL and the path to put the file at when the download fails.
    """
    entry = get_weights(name)
    path = entry.path(home)
    digests: list[str] = []
    try:
        atomic_write(path, lambda temp: digests.append(_fetch(entry.url, temp, entry.file)))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", None) or error
        raise ConnectionError(f"cannot download {entry.url} ({reason}); download it by other means and put it at "
                              f"{path}") from error
    checksum = path.with_name(f"{path.name}.sha256")
    atomic_write(checksum, lambda temp: Path(temp).write_text(f"{digests[0]}  {path.name}\n"))
    log.info("%s: SHA-256 %s (recorded in %s)", path, digests[0], checksum)
    return path


def recorded_sha256(name: str, home: str | os.PathLike | None = None) -> str | None:
    """The SHA-256 recorded when the zoo entry ``name`` was downloaded, or None (absent, or placed by hand)."""
    path = get_weights(name).path(home)
    checksum = path.with_name(f"{path.name}.sha256")
    return checksum.read_text().split()[0] if checksum.is_file() else None
