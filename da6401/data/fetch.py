"""Where the data lives, and how it gets there: data root, mirror, fetch, checksums."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

DATASETS = ("mnist", "cifar10", "multi30k")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MULTI30K_FILES = tuple(f"{split}.{lang}" for split in ("train", "val", "test_2016_flickr")
                       for lang in ("de", "en"))
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/{}.gz"
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

# The one checksum table, "algorithm:hexdigest". A key names the bytes that are hashed:
# MNIST keys have no .gz because MNIST is checked on its uncompressed bytes (so the official
# .gz and the mirror's re-gzipped copies both verify); the other keys name the archives.
CHECKSUMS = {
    "mnist/train-images-idx3-ubyte": "sha256:ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "mnist/train-labels-idx1-ubyte": "sha256:65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "mnist/t10k-images-idx3-ubyte": "sha256:0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "mnist/t10k-labels-idx1-ubyte": "sha256:ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "multi30k/train.de.gz": "sha256:726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "multi30k/train.en.gz": "sha256:d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "multi30k/val.de.gz": "sha256:f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "multi30k/val.en.gz": "sha256:14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "multi30k/test_2016_flickr.de.gz": "sha256:9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "multi30k/test_2016_flickr.en.gz": "sha256:611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "cifar10/cifar-10-jpeg.tar.gz": "sha256:2ed5e45f44779e16348c2b7d1cb3e80fcf3555740e2ae65986f7d311a775c704",
    "cifar10/cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a",
}


class ChecksumError(RuntimeError):
    """A fetched file does not match its checksum; the fetched copy was deleted."""


class DatasetMissingError(RuntimeError):
    """A dataset is not in the data root and could not be fetched."""


class DatasetWithheldError(DatasetMissingError):
    """The split is held back by the grader while the notebook is graded (the test sets are public, so a
    notebook that could read them while graded could look its answers up)."""


# While grading, the sandbox lists here the splits the kernel does not get, as "dataset:split" pairs.
WITHHELD_ENV = "DA6401_WITHHELD"
SPLIT_FILES = {
    ("mnist", "test"): ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ("cifar10", "test"): ("test_batch",),
    ("multi30k", "test_2016_flickr"): ("test_2016_flickr.de", "test_2016_flickr.en"),
}


def withheld() -> set[tuple[str, str]]:
    """The (dataset, split) pairs the grader withholds from this process (none outside grading)."""
    pairs = set()
    for item in os.environ.get(WITHHELD_ENV, "").split(","):
        name, _, split = item.strip().partition(":")
        if name and split:
            pairs.add((name, split))
    return pairs


def check_not_withheld(name: str, split: str) -> None:
    """Raise DatasetWithheldError when the grader withholds ``split`` of dataset ``name``."""
    if (name, split) in withheld():
        raise DatasetWithheldError(
            f"the {split} split of {name} is held by the grader while your notebook is graded: the grader measures "
            f"your model on it itself. Use the training and validation data in your own code, and the test split "
            f"only in the cells the notebook gives for the final measurement.")


def withheld_files(name: str) -> set[str]:
    return {f for (dataset, split), files in SPLIT_FILES.items() if dataset == name and (dataset, split) in withheld()
            for f in files}


class _Unavailable(Exception):
    """Internal: a source (mirror file or URL) could not be opened; carries the reason."""


def data_root() -> Path:
    """The data root: $DA6401_DATA if set, else <repo root>/data. Dataset `name` lives in root/name."""
    env = os.environ.get("DA6401_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"


def mirror_root() -> Path | None:
    """The offline mirror (layout of /work/shared/data): $DA6401_DATA_MIRROR, or None if unset."""
    env = os.environ.get("DA6401_DATA_MIRROR")
    return Path(env).expanduser() if env else None


def dataset_file(folder: Path, stem: str) -> Path | None:
    """Return folder/stem or folder/stem.gz, whichever exists (raw first), else None."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def fetch(name: str, root: Path | str | None = None, checksums: dict[str, str] | None = None) -> Path:
    """Make sure dataset `name` is complete under root/name, fetching it if needed.

    A dataset whose expected files all exist is returned at once (no re-hashing).
    Otherwise the missing files come from the mirror if DA6401_DATA_MIRROR is set, else
    from the official URLs; each fetched file is verified, then moved into place atomically.

    Args:
        name: one of "mnist", "cifar10", "multi30k".
        root: data root; defaults to data_root().
        checksums: checksum table to verify against; defaults to CHECKSUMS (tests pass their own).
    Returns:
        The dataset folder root/name.
    Raises:
        ValueError: unknown dataset name.
        DatasetMissingError: absent, and neither the mirror nor the download could provide it.
        ChecksumError: a fetched file failed verification (the file is not kept).
        RuntimeError: the mirror's build_batches.py failed (cifar10; nothing is kept).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    folder = Path(root if root is not None else data_root()) / name
    if _complete(name, folder):
        return folder
    mirror = mirror_root()
    folder.mkdir(parents=True, exist_ok=True)
    fetcher = {"mnist": _fetch_mnist, "cifar10": _fetch_cifar10, "multi30k": _fetch_multi30k}[name]
    try:
        fetcher(folder, mirror, CHECKSUMS if checksums is None else checksums)
    except _Unavailable as e:
        tried = (f"the mirror {mirror} (DA6401_DATA_MIRROR)" if mirror else
                 "the official download (DA6401_DATA_MIRROR is unset)")
        raise DatasetMissingError(
            f"{name} is not in {folder}, and {tried} could not provide it: {e}.\n"
            f"Fix: set DA6401_DATA_MIRROR=/path/to/shared/data (a complete offline mirror), "
            f"or run `python -m da6401.data fetch {name}` on a machine with internet.") from None
    return folder


def _complete(name: str, folder: Path) -> bool:
    skip = withheld_files(name)  # while grading, the withheld splits' files are absent on purpose
    if name == "cifar10":
        return all((folder / "cifar-10-batches-py" / f).is_file() for f in CIFAR10_FILES if f not in skip)
    return all(dataset_file(folder, f) for f in (MNIST_FILES if name == "mnist" else MULTI30K_FILES) if f not in skip)


def _fetch_mnist(folder: Path, mirror: Path | None, checksums: dict[str, str]) -> None:
    for stem in MNIST_FILES:
        if dataset_file(folder, stem) is None:
            src = mirror / "mnist" / f"{stem}.gz" if mirror else MNIST_URL.format(stem)
            _copy(src, folder / f"{stem}.gz", checksums[f"mnist/{stem}"], gunzip=True)


def _fetch_multi30k(folder: Path, mirror: Path | None, checksums: dict[str, str]) -> None:
    for stem in MULTI30K_FILES:
        if dataset_file(folder, stem) is None:
            src = mirror / "multi30k" / f"{stem}.gz" if mirror else MULTI30K_URL.format(stem)
            _copy(src, folder / f"{stem}.gz", checksums[f"multi30k/{stem}.gz"])


def _fetch_cifar10(folder: Path, mirror: Path | None, checksums: dict[str, str]) -> None:
    # Build in a temp folder inside the dataset folder, then rename: never a half-built batch dir.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        tmp = Path(tmp)
        if mirror:  # JPEG archive + the mirror's build_batches.py, which writes the official layout
            script = mirror / "cifar10" / "build_batches.py"
            if not script.is_file():
                raise _Unavailable(f"{script} is missing")
            archive = tmp / "cifar-10-jpeg.tar.gz"
            _copy(mirror / "cifar10" / archive.name, archive, checksums[f"cifar10/{archive.name}"])
            done = subprocess.run([sys.executable, str(script), str(tmp), "--archive", str(archive)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"{script} failed (exit {done.returncode}): {tail}")
        else:
            archive = tmp / "cifar-10-python.tar.gz"
            _copy(CIFAR10_URL, archive, checksums[f"cifar10/{archive.name}"])
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        target = folder / "cifar-10-batches-py"
        shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover would block the rename
        os.replace(tmp / "cifar-10-batches-py", target)


def _copy(src: Path | str, dest: Path, expected: str, gunzip: bool = False) -> None:
    """Copy src (mirror path or URL) to a temp file next to dest, verify it, rename it to dest."""
    print(f"fetching {src}", file=sys.stderr)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if isinstance(src, Path):
                    source = open(src, "rb")
                else:
                    source = urllib.request.urlopen(src, timeout=60)
            except OSError as e:  # missing mirror file, offline, HTTP error (URLError is an OSError)
                reason = getattr(e, "reason", None) or e.strerror or e
                raise _Unavailable(f"cannot open {src} ({reason})") from None
            with source:
                shutil.copyfileobj(source, out, 1 << 20)
        algorithm, digest = expected.split(":")
        actual = _digest(Path(tmp), algorithm, gunzip)
        if actual != digest:
            what = "uncompressed " if gunzip else ""
            raise ChecksumError(f"{dest.name}: {what}{algorithm} is {actual}, expected {digest} "
                                f"(fetched from {src})")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; data files are meant to be shared
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _digest(path: Path, algorithm: str, gunzip: bool) -> str:
    h = hashlib.new(algorithm)
    try:
        with (gzip.open if gunzip else open)(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # truncated or corrupt gzip
        return f"<unreadable: {e}>"
    return h.hexdigest()
