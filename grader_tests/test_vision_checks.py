"""Do the image-pipeline checks pass correct tensor-op augmentations and catch the usual bugs?"""
from __future__ import annotations

import pytest
import torch

from da6401.grader.vision import check_channel_stats, check_normalise, check_random_crop, check_random_flip


def flip(x, g):
    mask = torch.rand(len(x), generator=g) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def flip_wrong_axis(x, g):
    mask = torch.rand(len(x), generator=g) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-2), x)


def flip_all(x, g):
    return x.flip(-1)


def crop(x, padding, g):
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def crop_by_roll(x, padding, g):
    shifts = torch.randint(-padding, padding + 1, (2,), generator=g)
    return torch.roll(x, shifts=(int(shifts[0]), int(shifts[1])), dims=(-2, -1))


def crop_same_offset(x, padding, g):
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    return padded[:, :, 1:1 + x.shape[2], 2:2 + x.shape[3]]


def test_flip_check_passes_a_left_right_flip():
    """Does a per-image left-right flip pass?"""
    check_random_flip(flip)


@pytest.mark.parametrize("bad,message", [(flip_wrong_axis, "upside down"), (flip_all, "expected about 50%")])
def test_flip_check_catches_wrong_axis_and_flipping_everything(bad, message):
    """Is a flip along H, or a flip of every image, caught with a message that says which?"""
    with pytest.raises(AssertionError, match=message):
        check_random_flip(bad)


def crop_reflect(x, padding, g):
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def test_crop_check_passes_padded_random_crops():
    """Does a pad-then-crop at a random offset per image pass, with zero and with reflect padding?"""
    check_random_crop(crop, padding=4)
    check_random_crop(crop_reflect, padding=2, mode="reflect")


def test_crop_check_tells_zero_from_reflect_padding():
    """Is a reflect-padded crop rejected where the notebook asks for zero padding?"""
    with pytest.raises(AssertionError, match=r"padded by 4 \(constant\)"):
        check_random_crop(crop_reflect, padding=4)


@pytest.mark.parametrize("bad,message", [(crop_by_roll, "wrap around"), (crop_same_offset, "distinct offsets")])
def test_crop_check_catches_wraparound_and_a_fixed_offset(bad, message):
    """Is torch.roll (pixels wrap around) or one offset for the whole batch caught?"""
    with pytest.raises(AssertionError, match=message):
        check_random_crop(bad, padding=4)


def test_stats_and_normalise_checks_pass_correct_and_catch_wrong_scaling():
    """Do correct statistics and normalisation pass, and unscaled statistics or a division by the variance fail?"""
    check_channel_stats(lambda im: ((im / 255.0).mean(axis=(0, 1, 2)), (im / 255.0).std(axis=(0, 1, 2))))
    check_normalise(lambda x, m, s: (x - m[:, None, None]) / s[:, None, None])
    with pytest.raises(AssertionError, match="channel means"):
        check_channel_stats(lambda im: (im.mean(axis=(0, 1, 2)), im.std(axis=(0, 1, 2))))
    with pytest.raises(AssertionError, match="normalise"):
        check_normalise(lambda x, m, s: (x - m[:, None, None]) / s[:, None, None] ** 2)  # divides by the variance


def flip_global_coins(x, g):
    mask = torch.rand(len(x)) < 0.5  # torch's global generator, not g
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def crop_global_offsets(x, padding, g):
    return crop(x, padding, None)


def crop_never_at_2p(x, padding, g):
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding, (n,), generator=g)  # upper bound exclusive: 2p never drawn
    dx = torch.randint(0, 2 * padding, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def crop_assumes_square(x, padding, g):
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + h] for i in range(n)])  # width h


@pytest.mark.parametrize("check,bad,message", [
    (check_random_flip, flip_global_coins, "generators seeded alike"),
    (lambda f: check_random_crop(f, padding=2), crop_global_offsets, "generators seeded alike"),
    (lambda f: check_random_crop(f, padding=2), crop_never_at_2p, r"never used the offset dy = \[4\]"),
    (lambda f: check_random_crop(f, padding=2), crop_assumes_square, "changed the shape|stack expects"),
])
def test_augmentations_must_follow_the_generator_every_offset_and_any_shape(check, bad, message):
    """Is an augmentation that ignores its generator, never uses the largest offset (an exclusive randint bound) or
    only works on square images caught (a crash counts: in a hidden test it fails the test), while the correct
    ones (above) pass?"""
    with pytest.raises((AssertionError, RuntimeError), match=message):
        check(bad)
