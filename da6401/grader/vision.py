"""Checks for image pipelines written as tensor ops (A2's augmentation, A4's data), run by hidden tests.

The functions under test follow these contracts (stated in the notebooks):

- ``random_flip(x, generator)``: x (N, C, H, W) -> (N, C, H, W); each image is mirrored left-right
  (along W, the last axis) with probability 1/2, independently.
- ``random_crop(x, padding, generator)``: x (N, C, H, W) -> (N, C, H, W); each image is padded by
  ``padding`` on every side (zeros, or a reflection: the notebook says which), then an H x W window is
  cut at a random offset in [0, 2 * padding] per axis.
- ``channel_stats(images)``: uint8 (N, H, W, C) -> (mean, std), each of shape (C,), of pixel values
  scaled to [0, 1] (population std).
- ``normalise(x, mean, std)``: x (N, C, H, W) in [0, 1] -> (x - mean) / std per channel.

Each check draws unseen inputs, so a function tuned to the visible examples still meets new ones.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from da6401.grader.checks import assert_close
from da6401.student.checks import FLOAT32_BAND


def _distinct_images(n: int, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    """n images whose every pixel value is distinct, so any rearrangement can be identified."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return torch.randperm(n * c * h * w, generator=g).reshape(n, c, h, w).float() + 1.0


def check_random_flip(random_flip: Callable, n: int = 512, seed: int = 0) -> None:
    """Fail unless ``random_flip`` mirrors each image along W with probability about 1/2, keeping order.

    Raises:
        AssertionError: naming the first image that is neither itself nor its left-right mirror
            (a flip along H, a transpose, or a shuffled batch), or a flip rate far from 1/2.
    """
    __tracebackhide__ = True
    x = _distinct_images(n, seed=seed)
    out = random_flip(x.clone(), torch.Generator().manual_seed(seed))
    assert tuple(out.shape) == tuple(x.shape), f"random_flip changed the shape {tuple(x.shape)} to {tuple(out.shape)}"
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    bad = (~(same | mirrored)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        hint = " It is flipped upside down (along H): flip the last axis, W." if torch.equal(out[i], x[i].flip(-2)) else ""
        raise AssertionError(f"random_flip: image {i} is neither unchanged nor mirrored left-right.{hint}")
    rate = mirrored.float().mean().item()
    assert 0.4 <= rate <= 0.6, f"random_flip mirrored {rate:.0%} of {n} images; expected about 50%"
    _check_draws_from_the_generator("random_flip", lambda g: random_flip(x.clone(), g), seed)


def _check_draws_from_the_generator(name: str, augment: Callable, seed: int) -> None:
    """``augment(generator)`` must give the same batch for equally seeded generators (it draws from the
    generator it is given, not from torch's global one) and another batch for another seed."""
    __tracebackhide__ = True
    first = augment(torch.Generator().manual_seed(seed + 100))  # torch's global generator moves on between calls
    again = augment(torch.Generator().manual_seed(seed + 100))
    assert torch.equal(first, again), (f"{name} gave different batches for two generators seeded alike: draw the "
                                       "random numbers from the generator argument (generator=generator)")
    assert not torch.equal(first, augment(torch.Generator().manual_seed(seed + 101))), (
        f"{name} gave the same batch for differently seeded generators: draw from the generator argument")


def check_random_crop(random_crop: Callable, padding: int = 4, n: int = 256, seed: int = 0,
                      mode: str = "constant") -> None:
    """Fail unless each output image is an H x W window of the padded input, at varied offsets.

    ``mode`` is the padding of ``torch.nn.functional.pad``: "constant" (zeros) or "reflect".

    Raises:
        AssertionError: on a shape change, a window that is not inside the padded image (wrapping
            around with ``torch.roll``, or an offset beyond 2 * padding), or offsets that never vary.
    """
    __tracebackhide__ = True
    # not square (H != W), so that a crop that mixes up the two axes shows; every pixel value distinct
    x = _distinct_images(n, h=12, w=10, seed=seed)
    out = random_crop(x.clone(), padding, torch.Generator().manual_seed(seed))
    assert tuple(out.shape) == tuple(x.shape), f"random_crop changed the shape {tuple(x.shape)} to {tuple(out.shape)}"
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode=mode)
    h, w = x.shape[-2:]
    offsets = set()
    for i in range(n):
        found = next(((dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                      if torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])), None)
        assert found is not None, (f"random_crop: image {i} is not a {h}x{w} window of the image padded by "
                                   f"{padding} ({mode}); a crop must not wrap around or leave the padded image")
        offsets.add(found)
    assert len(offsets) >= min(10, (2 * padding + 1) ** 2 // 2), (
        f"random_crop used only {len(offsets)} distinct offsets over {n} images; draw one per image")
    # every offset 0..2p along each axis occurs (n images, 2p + 1 values: each is missed with chance ~e^-50)
    for axis, seen in (("dy", {dy for dy, _ in offsets}), ("dx", {dx for _, dx in offsets})):
        missing = sorted(set(range(2 * padding + 1)) - seen)
        assert not missing, (f"random_crop never used the offset {axis} = {missing} in {n} images; offsets are drawn "
                             f"uniformly from {{0, ..., {2 * padding}}} (torch.randint's upper bound is exclusive)")
    _check_draws_from_the_generator("random_crop", lambda g: random_crop(x.clone(), padding, g), seed)


def check_channel_stats(channel_stats: Callable, seed: int = 0) -> None:
    """Fail unless ``channel_stats`` returns the per-channel mean and std of pixels scaled to [0, 1]."""
    __tracebackhide__ = True
    rng = np.random.default_rng(10_000 + seed)
    images = (rng.beta(2, 5, size=(64, 6, 5, 3)) * np.array([255, 200, 120])).astype(np.uint8)
    mean, std = channel_stats(images)
    scaled = images / 255.0
    assert_close(np.asarray(mean, dtype=np.float64), scaled.mean(axis=(0, 1, 2)), tol=FLOAT32_BAND, name="channel means")
    assert_close(np.asarray(std, dtype=np.float64), scaled.std(axis=(0, 1, 2)), tol=FLOAT32_BAND, name="channel stds")


def check_normalise(normalise: Callable, seed: int = 0) -> None:
    """Fail unless ``normalise(x, mean, std)`` standardises each channel of (N, C, H, W) images."""
    __tracebackhide__ = True
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.rand(5, 3, 4, 6, generator=g)
    mean, std = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.3, 0.1, 0.25])
    out = normalise(x.clone(), mean, std)
    expected = (x - mean[:, None, None]) / std[:, None, None]
    assert_close(torch.as_tensor(out).double().numpy(), expected.double().numpy(), tol=FLOAT32_BAND, name="normalise(x)")
