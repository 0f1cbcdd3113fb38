"""CIFAR-10 as the hidden tests see it: the training split's statistics, normalised subsets, test accuracy.

Every value here comes from the data layer, never from the notebook under test, so a student's
variables (a shuffled test set, statistics from the wrong split) cannot change a verdict.
The notebooks' contract: a model takes (N, 3, 32, 32) float images, scaled to [0, 1] and
standardised per channel with the mean and std of the 50,000 training images.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from da6401.data import load_cifar10
from da6401.grader.models import assert_accuracy


@lru_cache(maxsize=2)
def split_stats(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std), each of shape (3,), of a split's pixels scaled to [0, 1] (population std)."""
    images, _ = load_cifar10(split)
    channels = [images[..., c] / 255.0 for c in range(3)]  # one channel at a time: float64 copies are large
    return np.array([c.mean() for c in channels]), np.array([c.std() for c in channels])


def check_training_stats(mean, std, tol: float = 2e-4) -> None:
    """Fail unless (mean, std) are the training split's per-channel statistics (to ``tol``).

    Raises:
        AssertionError: saying so when they are the test split's (a leak of test data).
    """
    __tracebackhide__ = True
    mean, std = (np.asarray(torch.as_tensor(v, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1)
                 for v in (mean, std))
    want_mean, want_std = split_stats("train")
    assert mean.shape == (3,) and std.shape == (3,), f"mean and std must have 3 entries, got {mean.shape}, {std.shape}"
    if np.abs(mean - want_mean).max() <= tol and np.abs(std - want_std).max() <= tol:
        return
    test_mean, test_std = split_stats("test")
    hint = (" They are the test split's: statistics must come from the training images only, or test data "
            "leaks into training." if np.abs(mean - test_mean).max() <= tol and np.abs(std - test_std).max() <= tol
            else "")
    raise AssertionError(f"mean {np.round(mean, 4)}, std {np.round(std, 4)} are not the training split's "
                         f"(mean {np.round(want_mean, 4)}, std {np.round(want_std, 4)}).{hint}")


def normalised(split: str, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as model inputs: float32 (N, 3, 32, 32) standardised with the training statistics, int64 (N,).

    Args:
        n: a random subset of this many images (the mirror's test split is sorted by class, so a
           prefix would hold one class); None for all of them, in order.
    """
    images, labels = load_cifar10(split)
    if n is not None:
        keep = np.random.default_rng(10_000 + seed).choice(len(images), size=n, replace=False)
        images, labels = images[keep], labels[keep]
    mean, std = split_stats("train")
    x = (images.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)


# The grader's own seed for the order and the perturbation of the graded test set (the grader is never shipped).
GRADED_SEED = 0x5EED_DA64


@lru_cache(maxsize=2)
def graded_test_set(seed: int = GRADED_SEED, noise: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 CIFAR-10 test images as the grader measures a model on them: in an order of its own, every
    other image (at random) mirrored left-right, and each pixel value moved by up to ``noise`` levels of 255.

    The test set is public, so a notebook could carry a table of its images and labels: in the file's order
    (sorted by class, so a model that only counts its calls scores 100 %), or keyed by exact pixel values. Neither
    survives this: the order is the grader's, and hardly one image in 10,000 keeps its exact pixels. A model
    barely notices (it was trained with flips; +-2 levels is below what JPEG already changed); the bars are
    calibrated on this set (test_thresholds.py).

    Returns:
        (float32 (N, 3, 32, 32) standardised with the training statistics, int64 labels (N,)); built once per
        process, so not to be changed in place.
    """
    images, labels = load_cifar10("test")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    images, labels = images[order], labels[order]
    flip = rng.random(len(images)) < 0.5
    images = np.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    images = np.clip(images.astype(np.int16) + rng.integers(-noise, noise + 1, images.shape), 0, 255).astype(np.uint8)
    mean, std = split_stats("train")
    x = (images.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)


def assert_test_accuracy(model: torch.nn.Module, bar: float) -> float:
    """Print ``model``'s accuracy on the grader's version of the 10,000 CIFAR-10 test images (see
    :func:`graded_test_set`) and fail below ``bar``."""
    __tracebackhide__ = True
    x, y = graded_test_set()
    return assert_accuracy(model, x, y, bar, name="CIFAR-10 test accuracy")


def preload() -> None:
    """Build the graded test set and the training statistics (the mutant runner's forks then share them)."""
    graded_test_set(), split_stats("train")
