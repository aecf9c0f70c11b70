"""Video transforms: shapes and ranges, one set of random parameters per clip, recipes, test crops, seeding."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from motionformer.data.transforms import (
    RECIPES,
    recipe_transforms,
    seeded,
    short_side_resize,
    spatial_crops,
    test_transform,
    train_transform,
)

CROP = 16


def _frames(num_frames: int = 4, height: int = 24, width: int = 32, seed: int = 0) -> torch.Tensor:
    """Random uint8 (T, H, W, 3) frames."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8, generator=generator)


def _column_frames(num_frames: int, height: int, width: int) -> torch.Tensor:
    """Frames whose every pixel holds its column index (transposed for portrait frames): uint8 (T, H, W, 3)."""
    columns = torch.arange(width, dtype=torch.uint8).expand(height, width)
    return columns[None, :, :, None].expand(num_frames, height, width, 3).contiguous()


def test_train_output_shape_dtype_range():
    transform = train_transform(CROP, (CROP, 20), color_jitter=True, rand_augment=True, random_erasing=0.5)
    out = transform(_frames())
    assert out.shape == (3, 4, CROP, CROP) and out.dtype == torch.float32
    assert type(out) is torch.Tensor
    assert out.min() >= -1.0 and out.max() <= 1.0  # mean = std = 0.5 maps [0, 1] to [-1, 1]


def test_train_applies_the_same_parameters_to_every_frame():
    frames = _frames(num_frames=1).expand(4, -1, -1, -1)  # 4 identical frames
    transform = train_transform(CROP, (CROP, 20), color_jitter=True, rand_augment=True, random_erasing=1.0)
    for seed in range(5):
        out = seeded(transform, seed)(frames)  # (3, T, crop, crop)
        for t in range(1, 4):
            torch.testing.assert_close(out[:, t], out[:, 0], rtol=0, atol=0)


def test_ssv2_recipe_never_flips():
    assert not RECIPES["ssv2"].flip and RECIPES["kinetics"].flip and RECIPES["epic"].flip
    frames = _column_frames(2, CROP, CROP)  # crop == frame size: only a flip can change the output
    expected = (frames.permute(3, 0, 1, 2).float() / 255 - 0.5) / 0.5  # (3, T, H, W)
    ssv2 = recipe_transforms("ssv2", training=True, crop_size=CROP, scale_range=(CROP, CROP), rand_augment=False)
    kinetics = recipe_transforms("kinetics", training=True, crop_size=CROP, scale_range=(CROP, CROP),
                                 color_jitter=False)
    flipped = 0
    for seed in range(10):
        torch.testing.assert_close(seeded(ssv2, seed)(frames), expected)
        flipped += not torch.equal(seeded(kinetics, seed)(frames), expected)
    assert 0 < flipped < 10


def test_recipe_contents_and_unknown_dataset():
    assert RECIPES["kinetics"].color_jitter and not RECIPES["kinetics"].rand_augment
    assert RECIPES["ssv2"].rand_augment and RECIPES["epic"].rand_augment and not RECIPES["epic"].color_jitter
    steps = [type(step) for step in recipe_transforms("epic", training=True).augment.transforms]
    assert v2.RandAugment in steps and v2.ColorJitter not in steps and v2.RandomHorizontalFlip in steps
    with pytest.raises(ValueError, match="epic, kinetics, ssv2"):
        recipe_transforms("ucf101", training=True)


@pytest.mark.parametrize("portrait", [False, True])
def test_three_test_crops_cover_start_centre_end_of_long_side(portrait):
    frames = _column_frames(2, CROP, 3 * CROP)  # columns 0..47, values are column indices
    if portrait:
        frames = frames.transpose(1, 2).contiguous()  # rows 0..47
    out = test_transform(CROP, num_crops=3, mean=(0.0,) * 3, std=(1 / 255,) * 3)(frames)
    assert out.shape == (3, 3, 2, CROP, CROP) and out.dtype == torch.float32
    long_axis = -2 if portrait else -1
    first_index = out.amin(dim=long_axis)[:, 0, 0, 0]  # smallest column (row) index in each crop
    torch.testing.assert_close(first_index, torch.tensor([0.0, CROP, 2 * CROP]))


def test_single_test_crop_is_centred_after_short_side_resize():
    frames = _frames(height=24, width=32)
    out = test_transform(CROP, short_side=CROP, num_crops=1)(frames)
    assert out.shape == (1, 3, 4, CROP, CROP)
    assert recipe_transforms("kinetics", training=False, crop_size=CROP)(frames).shape == (3, 3, 4, CROP, CROP)
    with pytest.raises(ValueError, match="num_crops"):
        test_transform(CROP, num_crops=2)


def test_seeded_is_reproducible_and_leaves_global_rng_alone():
    transform = train_transform(CROP, (CROP, 24))
    frames = _frames()
    state = torch.get_rng_state()
    first = seeded(transform, 0)(frames)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(seeded(transform, 0)(frames), first)
    assert any(not torch.equal(seeded(transform, seed)(frames), first) for seed in range(1, 4))


def test_bad_train_arguments():
    with pytest.raises(ValueError, match="scale_range"):
        train_transform(224, (128, 160))
    with pytest.raises(ValueError, match="random_erasing"):
        train_transform(random_erasing=1.5)


@pytest.mark.parametrize(("height", "width", "corners"), [
    (21, 31, [(3, 0), (3, 8), (3, 15)]),  # landscape: ceil(5 / 2) = 3 rows down, columns 0, ceil(15 / 2), end
    (31, 21, [(0, 3), (8, 3), (15, 3)]),  # portrait: top, centre, bottom
    (19, 19, [(2, 0), (2, 2), (2, 3)]),  # square: left, centre, right
])
def test_crop_offsets_round_up_for_odd_sizes(height, width, corners):
    positions = torch.arange(height * width, dtype=torch.float32).view(1, height, width)  # value = row * W + col
    crops = spatial_crops(positions, CROP, 3)
    assert [divmod(int(crop[0, 0, 0]), width) for crop in crops] == corners
    assert divmod(int(spatial_crops(positions, CROP, 1)[0, 0, 0, 0]), width) == corners[1]


def test_short_side_resize_is_bilinear_without_antialiasing():
    video = torch.rand(2, 3, 40, 90)
    resized = short_side_resize(video, CROP)
    assert resized.shape == (2, 3, CROP, 36)  # floor(90 / 40 * 16) = 36
    expected = torch.nn.functional.interpolate(video, size=(CROP, 36), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resized, expected, rtol=0, atol=1e-6)
    same = video[..., :CROP, :50]
    assert short_side_resize(same, CROP) is same  # the short side is already the size: no resampling


def test_test_views_normalise_before_resizing():
    """Normalising first and resizing after is what the released models saw: check against that order in float64."""
    frames = _frames(num_frames=2, height=20, width=27)
    mean, std = (0.45, 0.5, 0.55), (0.2, 0.25, 0.3)
    out = test_transform(CROP, num_crops=1, mean=mean, std=std)(frames)  # (1, 3, T, crop, crop)
    video = frames.permute(0, 3, 1, 2).double() / 255  # (T, 3, H, W)
    video = (video - torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64).view(3, 1, 1)
    video = torch.nn.functional.interpolate(video, size=(CROP, 21), mode="bilinear", align_corners=False)
    expected = video[..., :, 3:3 + CROP].transpose(0, 1)  # centre column ceil((21 - 16) / 2) = 3; (3, T, crop, crop)
    torch.testing.assert_close(out[0].double(), expected, rtol=0, atol=1e-5)


def test_bgr_input_equals_rgb_with_channels_swapped():
    frames = _frames(height=20, width=27)
    mean, std = (0.40, 0.45, 0.50), (0.20, 0.25, 0.30)
    bgr = test_transform(CROP, num_crops=3, mean=mean, std=std, channel_order="bgr")(frames)
    rgb = test_transform(CROP, num_crops=3, mean=mean[::-1], std=std[::-1])(frames)  # (crops, 3, T, crop, crop)
    torch.testing.assert_close(bgr, rgb.flip(1), rtol=0, atol=0)
    torch.testing.assert_close(bgr, test_transform(CROP, num_crops=3, mean=mean, std=std)(frames.flip(-1)))
    train = train_transform(CROP, (CROP, 20), mean=mean, std=std, channel_order="bgr")
    plain = train_transform(CROP, (CROP, 20), mean=mean[::-1], std=std[::-1])
    torch.testing.assert_close(seeded(train, 1)(frames), seeded(plain, 1)(frames).flip(0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="channel_order must be one of rgb, bgr, got 'BGR'"):
        test_transform(CROP, channel_order="BGR")
