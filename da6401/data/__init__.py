"""Course datasets: MNIST, CIFAR-10 and Multi30k, fetched once into a data root and loaded as numpy.

Data root: $DA6401_DATA if set, else <repo root>/data (git-ignored). Dataset `name` lives in
root/name, e.g. data/mnist/train-images-idx3-ubyte.gz.

Fetching: the first load (or `python -m da6401.data fetch`) fills the data root. With
$DA6401_DATA_MIRROR set, files are copied from that offline mirror (same layout as the course's
shared/data folder); otherwise they are downloaded from the official URLs. Every fetched file is
checksum-verified and moved into place atomically, so a present file is a complete one.

    >>> from da6401.data import load_mnist
    >>> images, labels = load_mnist("train")   # uint8 (60000, 28, 28), int64 (60000,)
"""
from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .fetch import ChecksumError, DatasetMissingError, DatasetWithheldError, data_root, fetch, mirror_root
from .mnist import load_mnist, read_idx
from .multi30k import load_multi30k

__all__ = ["data_root", "mirror_root", "fetch", "ChecksumError", "DatasetMissingError", "DatasetWithheldError",
           "load_mnist", "read_idx", "load_cifar10", "CIFAR10_CLASSES", "load_multi30k"]
