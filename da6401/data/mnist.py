"""MNIST: 28x28 grey digits, 60,000 train / 10,000 test, read from IDX files (gzipped or not)."""
import gzip
from pathlib import Path

import numpy as np

from .fetch import check_not_withheld, dataset_file, fetch

# IDX type byte -> numpy dtype (multi-byte types are big-endian)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # uint8 with 3 dims, uint8 with 1 dim


def read_idx(path: Path | str, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw, or gzipped if the name ends in .gz) into an array.

    Args:
        path: the file.
        magic: if given, the header's magic number must equal it (2051 MNIST images, 2049 labels).
    Returns:
        Array of the header's shape and dtype, e.g. uint8 (N, 28, 28) for MNIST images.
    Raises:
        ValueError: bad magic number, unknown type byte, or a size that disagrees with the header.
    """
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = bytearray(f.read())  # bytearray, so the returned array is writable
    found = int.from_bytes(data[:4], "big")
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {found})")
    if magic is not None and found != magic:
        raise ValueError(f"{path}: IDX magic number is {found}, expected {magic}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = len(data) - 4 - 4 * ndim
    if body != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape}, but the file holds {body} data bytes")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str = "train", root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split, fetching it first if needed.

    Args:
        split: "train" (60,000) or "test" (10,000).
        root: data root (the files are in root/mnist); defaults to data_root().
    Returns:
        images: uint8 (N, 28, 28), pixel values 0..255.
        labels: int64 (N,), digits 0..9.
    Raises:
        ValueError: unknown split, bad IDX header, or image and label counts that disagree.
        DatasetMissingError, ChecksumError: see fetch(); DatasetWithheldError while graded, for a test split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown MNIST split {split!r}; expected 'train' or 'test'")
    check_not_withheld("mnist", split)
    folder = fetch("mnist", root)
    prefix = "train" if split == "train" else "t10k"
    images_path = dataset_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = dataset_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{images_path} has images of shape {images.shape}, "
                         f"{labels_path} has {len(labels)} labels; expected (N, 28, 28) and N")
    return images, labels.astype(np.int64)
