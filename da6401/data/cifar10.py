"""CIFAR-10: 32x32 colour images in 10 classes, 50,000 train / 10,000 test, from pickle batches."""
import pickle
from pathlib import Path

import numpy as np

from .fetch import check_not_withheld, fetch

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def load_cifar10(split: str = "train", root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split from the official "python version" batches, fetching them if needed.

    Each batch row holds 3072 bytes channel-major: 1024 red, 1024 green, 1024 blue (row-major 32x32).

    Args:
        split: "train" (data_batch_1..5, in that order) or "test" (test_batch).
        root: data root (batches in root/cifar10/cifar-10-batches-py); defaults to data_root().
    Returns:
        images: uint8 (N, 32, 32, 3), height x width x RGB.
        labels: int64 (N,), indices into CIFAR10_CLASSES.
    Raises:
        ValueError: unknown split.
        DatasetMissingError, ChecksumError: see fetch(); DatasetWithheldError while graded, for a test split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    check_not_withheld("cifar10", split)
    folder = fetch("cifar10", root) / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    rows, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        rows.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    images = np.concatenate(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.concatenate(labels)
