"""Do the CIFAR-10 references of the hidden tests hold on the real data (mirror), and catch a test-split leak?"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from da6401.data import load_cifar10
from da6401.grader import cifar


@pytest.fixture(scope="module")
def train_stats(needs_data):
    """The training split's per-channel statistics, computed here independently (torch, float64, all at once)."""
    images, _ = load_cifar10("train")
    pixels = torch.from_numpy(images).reshape(-1, 3).double() / 255
    return pixels.mean(0).numpy(), pixels.std(0, unbiased=False).numpy()


def test_training_statistics_are_accepted(train_stats):
    """Are the training split's statistics accepted, as NumPy arrays and as float32 tensors?"""
    mean, std = train_stats
    cifar.check_training_stats(mean, std)
    cifar.check_training_stats(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))


def test_test_split_statistics_are_named_as_a_leak(needs_data):
    """Are statistics computed on the test images refused, with the leak named?"""
    images, _ = load_cifar10("test")
    pixels = images.reshape(-1, 3) / 255.0
    with pytest.raises(AssertionError, match="They are the test split's"):
        cifar.check_training_stats(pixels.mean(0), pixels.std(0))


def test_other_statistics_are_refused(train_stats):
    """Are textbook ImageNet statistics, or the training mean off by 1e-3, refused without the leak hint?"""
    mean, std = train_stats
    for bad_mean, bad_std in (([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), (mean + 1e-3, std)):
        with pytest.raises(AssertionError, match=r"are not the training split's \(mean") as failure:
            cifar.check_training_stats(bad_mean, bad_std)
        assert "test split" not in str(failure.value)


def test_normalised_subsets_are_random_standardised_images(needs_data):
    """Is a subset drawn at random (the test split is sorted by class) and standardised per channel?"""
    x, y = cifar.normalised("test", n=2000, seed=3)
    assert x.shape == (2000, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(torch.unique(y)) == 10, "a prefix of the sorted test split would hold one class"
    assert np.allclose(x.mean(dim=(0, 2, 3)).numpy(), 0, atol=0.05)
    assert np.allclose(x.std(dim=(0, 2, 3)).numpy(), 1, atol=0.05)


class Constant(torch.nn.Module):
    """Always predicts class 3."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()


def test_test_accuracy_of_a_constant_model_is_one_tenth(needs_data, capsys):
    """Does a model that always says 'cat' score exactly 10 % (1,000 test images per class) and fail a 70 % bar?"""
    with pytest.raises(AssertionError, match="CIFAR-10 test accuracy is 0.1000; it must be at least 0.70"):
        cifar.assert_test_accuracy(Constant(), bar=0.70)
    assert "CIFAR-10 test accuracy: 0.1000" in capsys.readouterr().out


class _PositionLookup(torch.nn.Module):
    """A cheat: answers by counting the images it has seen (CIFAR-10's test file is sorted by class)."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        position = torch.arange(self.seen, self.seen + len(x))
        self.seen += len(x)
        return torch.nn.functional.one_hot((position // 1000) % 10, 10).float()


class _PixelLookup(torch.nn.Module):
    """A cheat: a table from the test images' exact (normalised) pixels to their labels."""

    def __init__(self, x, y):
        super().__init__()
        self.table = {row.numpy().tobytes(): int(label) for row, label in zip(x, y)}

    def forward(self, x):
        labels = torch.tensor([self.table.get(row.numpy().tobytes(), 0) for row in x])
        return torch.nn.functional.one_hot(labels, 10).float()


@pytest.mark.parametrize("make_cheat", [lambda x, y: _PositionLookup(), _PixelLookup], ids=["by_position", "by_pixels"])
def test_a_lookup_of_the_public_test_set_aces_it_in_the_files_order_but_not_as_graded(make_cheat):
    """Does a table of the public test set (by position, or by exact pixels) score 100 % on the test split as it
    is on disk, and about chance on the grader's order and perturbation of it?"""
    from da6401.grader.models import accuracy

    x, y = cifar.normalised("test")
    assert accuracy(make_cheat(x, y), x, y) == 1.0, "the cheat should work on the plain test set"
    gx, gy = cifar.graded_test_set()
    assert accuracy(make_cheat(x, y), gx, gy) < 0.15


def test_the_graded_test_set_is_the_test_set_in_another_order_and_barely_changed():
    """Are the graded images the test images (flipped or not) within +-2 levels, every label kept, in another order?"""
    images, labels = load_cifar10("test")
    gx, gy = cifar.graded_test_set()
    assert sorted(gy.tolist()) == sorted(labels.tolist()) and gy.tolist() != labels.tolist()
    mean, std = cifar.split_stats("train")
    back = (gx.permute(0, 2, 3, 1).numpy() * std + mean) * 255.0
    order = np.random.default_rng(cifar.GRADED_SEED).permutation(len(images))
    original = images[order].astype(np.float64)
    deviation = np.minimum(np.abs(back - original).max(axis=(1, 2, 3)), np.abs(back - original[:, :, ::-1]).max(axis=(1, 2, 3)))
    assert deviation.max() <= 2.01, f"an image moved by {deviation.max():.2f} levels"
