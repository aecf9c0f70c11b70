"""Video transforms: decoded uint8 (T, H, W, 3) frames -> normalised float clips for the model.

Built on ``torchvision.transforms.v2``: frames are wrapped as a ``tv_tensors.Video`` (T, C, H, W), for which
every random transform draws its parameters once per call, so all frames of a clip get the same crop, flip,
colour change and erased box. Randomness comes from torch's global generator; for a reproducible call use
``seeded(transform, seed)(frames)``, which runs the call under ``torch.random.fork_rng`` with
``torch.manual_seed(seed)`` and leaves the global generator as it was.

``train_transform`` gives (3, T, crop, crop), float32, or uint8 with ``normalize=False`` (a quarter of the bytes to
the device; ``normalize_clips`` finishes the batch there, with the same numbers); ``test_transform`` gives
(num_crops, 3, T, crop, crop), the released models' test views: in float32, normalise ``(x / 255 - mean) / std``,
resize the short side to the crop size (bilinear, ``align_corners=False``, no antialiasing; the long side
``floor(long / short * crop)``), then crop at ``ceil((side - crop) / 2)`` (3 crops: start, centre and end of the
longer side). Both take ``channel_order``: ``"bgr"`` flips the decoded RGB frames' channels first, for weights
trained on frames read with OpenCV (the released SSv2 and Epic-Kitchens models); ``mean`` and ``std`` are in the
weights' order. Training resizes without antialiasing too. ``RECIPES`` holds the paper's per-dataset defaults and
``recipe_transforms`` builds a transform from one. Test views stay float32 in the workers: the released protocol
resizes the normalised frames in float, and its numbers are kept exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from motionformer.models.spec import CHANNEL_ORDERS

__all__ = [
    "CHANNEL_ORDERS",
    "COLOR_JITTER",
    "RECIPES",
    "Recipe",
    "TestTransform",
    "TrainTransform",
    "frames_to_video",
    "normalize",
    "normalize_clips",
    "recipe_transforms",
    "seeded",
    "short_side_resize",
    "spatial_crops",
    "test_transform",
    "to_channel_order",
    "train_transform",
    "video_to_channels_first",
]

# Colour jitter strengths when enabled: brightness, contrast and saturation factors in [0.6, 1.4], hue +- 0.1.
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
# RandAugment settings: torchvision's defaults (2 ops of magnitude 9 of 30), the "rand-m9-n2" of timm's notation;
# timm's magnitude noise ("mstd") and increasing-severity ops ("inc1") are not reproduced.
RAND_AUGMENT_OPS = 2
RAND_AUGMENT_MAGNITUDE = 9


def frames_to_video(frames: Tensor) -> tv_tensors.Video:
    """Decoded frames uint8 (T, H, W, 3) -> ``tv_tensors.Video`` (T, 3, H, W), same dtype."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {tuple(frames.shape)}")
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def video_to_channels_first(video: Tensor) -> Tensor:
    """(..., T, C, H, W) -> plain tensor (..., C, T, H, W), the model's input layout."""
    return video.as_subclass(Tensor).transpose(-4, -3).contiguous()


def to_channel_order(frames: Tensor, channel_order: str) -> Tensor:
    """Decoded RGB frames (..., 3) in ``channel_order``: unchanged for ``"rgb"``, channels reversed for ``"bgr"``."""
    _check_channel_order(channel_order)
    return frames.flip(-1) if channel_order == "bgr" else frames


def normalize(video: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (T, 3, H, W) -> float32 ``(x / 255 - mean) / std`` per channel."""
    shape = (3, 1, 1)
    mean_t, std_t = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    return (video.as_subclass(Tensor).float() / 255 - mean_t) / std_t


def normalize_clips(video: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 clips (..., 3, T, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, on their device.

    The same operations as ``train_transform``'s last steps in the workers, so the result is bit-identical.
    """
    shape = (3, 1, 1, 1)
    # non_blocking: a blocking copy to a GPU waits for the device
    mean_t = torch.tensor(mean, dtype=torch.float32).view(shape).to(video.device, non_blocking=True)
    std_t = torch.tensor(std, dtype=torch.float32).view(shape).to(video.device, non_blocking=True)
    return video.to(torch.float32).mul_(1.0 / 255).sub_(mean_t).div_(std_t)


def short_side_resize(video: Tensor, size: int) -> Tensor:
    """Resize (..., H, W) so the shorter side is ``size``: the longer becomes ``floor(long / short * size)``.

    Bilinear with ``align_corners=False`` and no antialiasing (``torch.nn.functional.interpolate``); unchanged
    when the shorter side is already ``size``.
    """
    height, width = video.shape[-2:]
    if min(height, width) == size:
        return video
    if width < height:
        new_size = [math.floor(height / width * size), size]
    else:
        new_size = [size, math.floor(width / height * size)]
    return TF.resize(video, new_size, interpolation=v2.InterpolationMode.BILINEAR, antialias=False)


def spatial_crops(video: Tensor, crop_size: int, num_crops: int) -> Tensor:
    """``num_crops`` square crops of (..., H, W) along its longer side: (num_crops, ..., crop, crop).

    One crop is the centre, at ``ceil((H - crop) / 2)``, ``ceil((W - crop) / 2)``; three are start / centre /
    end of the longer side (left, centre, right when W >= H; top, centre, bottom when H > W), centred on the
    shorter side, as the released models' 3-crop testing. Raises ValueError when a side is shorter than
    ``crop_size``.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    height, width = video.shape[-2:]
    if min(height, width) < crop_size:
        raise ValueError(f"frames of {height}x{width} are smaller than crop_size={crop_size}")
    centre_top, centre_left = math.ceil((height - crop_size) / 2), math.ceil((width - crop_size) / 2)
    if num_crops == 1:
        corners = [(centre_top, centre_left)]
    elif height > width:
        corners = [(0, centre_left), (centre_top, centre_left), (height - crop_size, centre_left)]
    else:
        corners = [(centre_top, 0), (centre_top, centre_left), (centre_top, width - crop_size)]
    return torch.stack([video[..., top : top + crop_size, left : left + crop_size] for top, left in corners])


class TrainTransform(nn.Module):
    """Training augmentation, uint8 (T, H, W, 3) -> float (3, T, crop, crop); build with ``train_transform``."""

    def __init__(self, augment: v2.Compose, channel_order: str = "rgb"):
        super().__init__()
        self.augment, self.channel_order = augment, channel_order

    def forward(self, frames: Tensor) -> Tensor:
        video = frames_to_video(to_channel_order(frames, self.channel_order))
        return video_to_channels_first(self.augment(video))


class TestTransform(nn.Module):
    """Test-time views, uint8 (T, H, W, 3) -> float (num_crops, 3, T, crop, crop); build with ``test_transform``."""

    __test__ = False  # not a pytest test class

    def __init__(self, crop_size: int, short_side: int, num_crops: int, mean: Sequence[float],
                 std: Sequence[float], channel_order: str = "rgb"):
        super().__init__()
        self.crop_size, self.short_side, self.num_crops = crop_size, short_side, num_crops
        self.mean, self.std, self.channel_order = tuple(mean), tuple(std), channel_order

    def forward(self, frames: Tensor) -> Tensor:
        video = normalize(frames_to_video(to_channel_order(frames, self.channel_order)), self.mean, self.std)
        video = short_side_resize(video, self.short_side)
        return video_to_channels_first(spatial_crops(video, self.crop_size, self.num_crops))

    def extra_repr(self) -> str:
        return (f"crop_size={self.crop_size}, short_side={self.short_side}, num_crops={self.num_crops}, "
                f"mean={self.mean}, std={self.std}, channel_order={self.channel_order!r}")


def _check_channel_order(channel_order: str) -> None:
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {channel_order!r}")


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std must be 3 values each with std > 0, got mean={mean!r}, std={std!r}")


def train_transform(crop_size: int = 224, scale_range: tuple[int, int] = (256, 320), flip: bool = True,
                    color_jitter: bool = False, rand_augment: bool = False, random_erasing: float = 0.0,
                    mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                    channel_order: str = "rgb", normalize: bool = True) -> TrainTransform:
    """Training augmentation: uint8 (T, H, W, 3) -> float32 (3, T, crop_size, crop_size).

    In order, with one draw of each random parameter per clip: put the channels in ``channel_order``; resize the
    short side to a random integer in ``scale_range`` (inclusive, aspect kept, bilinear without antialiasing);
    random ``crop_size`` square crop; horizontal flip with p = 0.5
    if ``flip``; colour jitter with ``COLOR_JITTER`` strengths if ``color_jitter``; torchvision's RandAugment
    (``RAND_AUGMENT_OPS`` ops of ``RAND_AUGMENT_MAGNITUDE``) on the uint8 clip if ``rand_augment``; scale to
    [0, 1] and normalise with ``mean`` / ``std``; random erasing of one box (set to 0, the mean) with
    probability ``random_erasing``. ``normalize=False`` stops before the scaling and returns the uint8 clip, for
    ``normalize_clips`` on the device; it needs ``random_erasing=0`` (the erased value, the mean, is no uint8).
    """
    low, high = scale_range
    if not crop_size <= low <= high:
        raise ValueError(f"scale_range must be (low, high) with crop_size={crop_size} <= low <= high, "
                         f"got {scale_range!r}")
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing!r}")
    if not normalize and random_erasing > 0:
        raise ValueError(f"random_erasing={random_erasing} needs normalize=True: erased pixels are set to the mean, "
                         "which a uint8 clip cannot hold")
    _check_mean_std(mean, std)
    _check_channel_order(channel_order)
    steps: list[nn.Module] = [
        v2.RandomShortestSize(min_size=list(range(low, high + 1)), antialias=False),
        v2.RandomCrop(crop_size),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if color_jitter:
        steps.append(v2.ColorJitter(**COLOR_JITTER))
    if rand_augment:
        steps.append(v2.RandAugment(num_ops=RAND_AUGMENT_OPS, magnitude=RAND_AUGMENT_MAGNITUDE))
    if normalize:
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    if random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing, value=0))
    return TrainTransform(v2.Compose(steps), channel_order)


def test_transform(crop_size: int = 224, short_side: int | None = None, num_crops: int = 3,
                   mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                   channel_order: str = "rgb") -> TestTransform:
    """Test-time views: uint8 (T, H, W, 3) -> float32 (num_crops, 3, T, crop_size, crop_size).

    Put the channels in ``channel_order``, normalise, resize the short side to ``short_side`` (default
    ``crop_size``; see ``short_side_resize``), then take 1 centre crop or 3 crops along the longer side (see
    ``spatial_crops``). Deterministic.
    """
    short_side = crop_size if short_side is None else short_side
    if short_side < crop_size:
        raise ValueError(f"short_side must be >= crop_size={crop_size}, got {short_side}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    _check_mean_std(mean, std)
    _check_channel_order(channel_order)
    return TestTransform(crop_size, short_side, num_crops, mean, std, channel_order)


test_transform.__test__ = False  # not a pytest test function


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One dataset's augmentation defaults (the paper's recipe); fields are ``train_transform`` arguments."""

    flip: bool
    color_jitter: bool
    rand_augment: bool
    scale_range: tuple[int, int] = (256, 320)
    crop_size: int = 224
    random_erasing: float = 0.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


RECIPES: dict[str, Recipe] = {
    "kinetics": Recipe(flip=True, color_jitter=True, rand_augment=False),
    # Something-Something labels name left and right ("pushing something from left to right"): never flip.
    "ssv2": Recipe(flip=False, color_jitter=False, rand_augment=True),
    "epic": Recipe(flip=True, color_jitter=False, rand_augment=True),
}


def recipe_transforms(dataset: str, training: bool, **overrides: object) -> TrainTransform | TestTransform:
    """The transform for ``dataset`` (a key of ``RECIPES``) with its recipe, then ``overrides``, as arguments.

    Training passes the whole recipe to ``train_transform``; testing passes its crop size, mean and std to
    ``test_transform`` (``channel_order`` is an override of either). Overrides must be arguments of the chosen
    function (TypeError otherwise).
    """
    if dataset not in RECIPES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[dataset]
    if training:
        return train_transform(**{**dataclasses.asdict(recipe), **overrides})
    defaults = {"crop_size": recipe.crop_size, "mean": recipe.mean, "std": recipe.std}
    return test_transform(**{**defaults, **overrides})


def seeded(transform: Callable[[Tensor], Tensor], seed: int) -> Callable[[Tensor], Tensor]:
    """``transform`` made reproducible: each call runs with torch's CPU generator seeded with ``seed``.

    The global generator is restored afterwards (``torch.random.fork_rng``), so the caller's stream is
    untouched. Same seed and input give the same output; a dataset can pass e.g. ``hash((epoch, index))``.
    """

    def call(frames: Tensor) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return transform(frames)

    return call
