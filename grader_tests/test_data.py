"""Tests for da6401.data on tiny fixture files built in tmp_path (no real data, no network).

The one test marked slow reads the real offline mirror at ../shared/data, next to the repo.
"""
import gzip
import hashlib
import importlib
import io
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from da6401.data import (CIFAR10_CLASSES, ChecksumError, DatasetMissingError, data_root, fetch,
                         load_cifar10, load_mnist, load_multi30k, mirror_root, read_idx)
from da6401.data.__main__ import main

fetch_module = importlib.import_module("da6401.data.fetch")  # the package's `fetch` is the function
REPO = Path(__file__).resolve().parents[1]
REAL_MIRROR = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every test starts with no data env vars and a network that refuses all requests."""
    monkeypatch.delenv("DA6401_DATA", raising=False)
    monkeypatch.delenv("DA6401_DATA_MIRROR", raising=False)

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> bytes:
    """Write `array` as an IDX file (gzipped if path ends in .gz); return the uncompressed bytes."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return data


def make_mnist(folder: Path, test_suffix: str = ".gz") -> dict[str, str]:
    """Tiny MNIST (3 train, 2 test) in `folder`; returns its checksum table (uncompressed bytes)."""
    rng = np.random.default_rng(0)
    checksums = {}
    for prefix, n, suffix in (("train", 3, ".gz"), ("t10k", 2, test_suffix)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            stem = f"{prefix}-{kind}-ubyte"
            checksums[f"mnist/{stem}"] = sha256(write_idx(folder / f"{stem}{suffix}", array))
    return checksums


def multi30k_lines(split: str, lang: str) -> list[str]:
    return [f"{split} {lang} satz {i}  Männer " for i in range(3)]  # trailing spaces must survive


def make_multi30k(folder: Path) -> dict[str, str]:
    """Tiny Multi30k (3 lines per file) in `folder`; returns its checksum table (.gz bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("de", "en"):
            data = gzip.compress("".join(f"{s}\n" for s in multi30k_lines(split, lang)).encode())
            (folder / f"{split}.{lang}.gz").write_bytes(data)
            checksums[f"multi30k/{split}.{lang}.gz"] = sha256(data)
    return checksums


def write_batch(path: Path, rows: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": rows, b"labels": labels, b"batch_label": b"fixture"}, f, protocol=2)


def make_cifar_batches(folder: Path) -> None:
    """Official layout, one row per train batch: batch i has label i-1 and first byte 10*i."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        rows = np.zeros((1, 3072), dtype=np.uint8)
        rows[0, 0] = 10 * i
        write_batch(folder / f"data_batch_{i}", rows, [i - 1])
    test = np.zeros((2, 3072), dtype=np.uint8)
    test[0, 0 * 1024 + 1 * 32 + 2] = 200   # red   at row 1, column 2
    test[0, 1 * 1024 + 0 * 32 + 0] = 100   # green at row 0, column 0
    test[0, 2 * 1024 + 31 * 32 + 31] = 50  # blue  at row 31, column 31
    write_batch(folder / "test_batch", test, [3, 9])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f, protocol=2)


def make_mirror(path: Path) -> tuple[Path, dict[str, str]]:
    """A fixture mirror with MNIST and Multi30k in the shared/data layout, and its checksums."""
    return path, {**make_mnist(path / "mnist"), **make_multi30k(path / "multi30k")}


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_does_read_idx_read_gzipped_and_raw_files_alike(tmp_path):
    """Does read_idx give the same array, shape and dtype for a .gz and a raw IDX file?"""
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array)
    wide = np.array([1, -2, 300], dtype=">i4")
    write_idx(tmp_path / "b", wide, code=0x0C)
    for path in ("a.gz", "a"):
        out = read_idx(tmp_path / path)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, array)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), [1, -2, 300])


def test_does_a_bad_idx_header_raise_value_error_naming_the_file(tmp_path):
    """Do a wrong magic number, a non-IDX file and a short body each raise ValueError naming the file?"""
    write_idx(tmp_path / "labels.gz", np.zeros(5, dtype=np.uint8))  # magic 2049
    with pytest.raises(ValueError, match=r"labels\.gz.*2049.*expected 2051"):
        read_idx(tmp_path / "labels.gz", magic=2051)
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="junk"):
        read_idx(tmp_path / "junk")
    data = write_idx(tmp_path / "short", np.zeros((2, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="short.*shape"):
        read_idx(tmp_path / "short")


def test_does_load_mnist_return_uint8_images_and_int64_labels(tmp_path):
    """Does load_mnist read both splits (gz and raw files) as uint8 (N, 28, 28) and int64 (N,)?"""
    make_mnist(tmp_path / "mnist", test_suffix="")
    for split, n in (("train", 3), ("test", 2)):
        images, labels = load_mnist(split, root=tmp_path)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert labels.tolist() == list(range(n))
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", root=tmp_path)


def test_does_load_cifar10_keep_batch_order_and_return_hwc_images(tmp_path):
    """Does load_cifar10 concatenate data_batch_1..5 in order and unpack channel-major rows to HWC?"""
    make_cifar_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    images, labels = load_cifar10("train", root=tmp_path)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert images[:, 0, 0, 0].tolist() == [10, 20, 30, 40, 50]
    images, labels = load_cifar10("test", root=tmp_path)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 9]
    assert images[0, 1, 2, 0] == 200 and images[0, 0, 0, 1] == 100 and images[0, 31, 31, 2] == 50
    assert images.sum() == 350 and images.flags.c_contiguous
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"


def test_does_load_multi30k_return_line_aligned_tuples(tmp_path):
    """Does load_multi30k pair line i of each language, in the order of langs, keeping inner spaces?"""
    make_multi30k(tmp_path / "multi30k")
    pairs = load_multi30k("val", root=tmp_path)
    assert pairs == list(zip(multi30k_lines("val", "de"), multi30k_lines("val", "en")))
    singles = load_multi30k("test_2016_flickr", langs=("en",), root=tmp_path)
    assert singles[2] == ("test_2016_flickr en satz 2  Männer ",)
    assert load_multi30k("train", langs=("en", "de"), root=tmp_path)[0][0].startswith("train en")


def test_does_load_multi30k_reject_files_with_different_line_counts(tmp_path):
    """Does load_multi30k raise ValueError naming both files when their line counts differ?"""
    make_multi30k(tmp_path / "multi30k")
    (tmp_path / "multi30k" / "val.en.gz").write_bytes(gzip.compress(b"only one line\n"))
    with pytest.raises(ValueError, match=r"val\.de\.gz has 3 lines.*val\.en\.gz has 1 lines"):
        load_multi30k("val", root=tmp_path)


def test_does_fetch_copy_and_verify_files_from_the_mirror(tmp_path, monkeypatch):
    """Does fetch copy MNIST and Multi30k byte for byte from a mirror, leaving no temp files?"""
    mirror, checksums = make_mirror(tmp_path / "mirror")
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(mirror))
    root = tmp_path / "data"
    for name in ("mnist", "multi30k"):
        folder = fetch(name, root, checksums=checksums)
        assert folder == root / name
        assert [p.name for p in files_under(folder)] == [p.name for p in files_under(mirror / name)]
        for path in files_under(folder):
            assert path.read_bytes() == (mirror / name / path.name).read_bytes()
    assert load_mnist("test", root=root)[0].shape == (2, 28, 28)
    assert len(load_multi30k("train", root=root)) == 3


@pytest.mark.parametrize("name", ["mnist", "multi30k"])
def test_does_a_truncated_mirror_file_fail_its_checksum_and_leave_nothing_behind(
        tmp_path, monkeypatch, name):
    """Does a truncated mirror file raise ChecksumError (file, digests, source) and leave no file?"""
    mirror, checksums = make_mirror(tmp_path / "mirror")
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(mirror))
    first = {"mnist": "train-images-idx3-ubyte.gz", "multi30k": "train.de.gz"}[name]
    bad = mirror / name / first
    bad.write_bytes(bad.read_bytes()[:-20])
    expected = checksums[f"{name}/{first.removesuffix('.gz')}" if name == "mnist" else f"{name}/{first}"]
    with pytest.raises(ChecksumError) as info:
        fetch(name, tmp_path / "data", checksums=checksums)
    message = str(info.value)
    assert first in message and expected.split(":")[1] in message and str(bad) in message
    assert files_under(tmp_path / "data") == []


def test_does_a_missing_dataset_offline_raise_one_clear_error(tmp_path, monkeypatch):
    """With no mirror and no network, is there one DatasetMissingError naming dataset, folder and fix?"""
    tried = []

    def offline(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetMissingError) as info:
        load_mnist(root=tmp_path)
    message = str(info.value)
    assert "mnist" in message and str(tmp_path / "mnist") in message and "no route to host" in message
    assert "DA6401_DATA_MIRROR is unset" in message and "python -m da6401.data fetch mnist" in message
    assert tried and tried[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert files_under(tmp_path) == []


def test_does_a_mirror_without_the_dataset_raise_dataset_missing(tmp_path, monkeypatch):
    """Does a mirror that lacks the files give DatasetMissingError naming the mirror and the file?"""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(mirror))
    pattern = r"(?s)multi30k.*mirror.*train\.de\.gz.*DA6401_DATA_MIRROR="
    with pytest.raises(DatasetMissingError, match=pattern):
        fetch("multi30k", tmp_path / "data")


def test_is_an_already_present_dataset_used_without_refetching_or_rehashing(tmp_path, monkeypatch):
    """Once fetched, does a dataset still load after its mirror is gone, without hashing again?"""
    mirror, checksums = make_mirror(tmp_path / "mirror")
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(mirror))
    fetch("mnist", tmp_path / "data", checksums=checksums)
    shutil.rmtree(mirror)

    def no_hashing(*args):
        raise AssertionError("a present dataset was hashed again")
    monkeypatch.setattr(fetch_module, "_digest", no_hashing)
    images, labels = load_mnist("train", root=tmp_path / "data")
    assert images.shape == (3, 28, 28) and labels.tolist() == [0, 1, 2]


FAKE_BUILD = '''\
import pickle, sys, tarfile
from pathlib import Path
import numpy as np
out, archive = Path(sys.argv[1]) / "cifar-10-batches-py", sys.argv[3]
out.mkdir(parents=True)
n = len(tarfile.open(archive).getnames())
names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
for i, name in enumerate(names):
    with open(out / name, "wb") as f:
        pickle.dump({b"data": np.full((1, 3072), i, np.uint8), b"labels": [n]}, f, protocol=2)
    if FAIL_AFTER == i:
        sys.exit("build failed halfway")
'''


def make_cifar_mirror(mirror: Path, fail_after: int | None = None) -> dict[str, str]:
    """Mirror with a two-JPEG archive and a fake build_batches.py; returns its checksums."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in ("train/cat/0001.jpg", "test/dog/0001.jpg"):
            jpeg = io.BytesIO()
            Image.new("RGB", (32, 32), (255, 0, 0)).save(jpeg, "JPEG")
            info = tarfile.TarInfo(member)
            info.size = jpeg.tell()
            tar.addfile(info, io.BytesIO(jpeg.getvalue()))
    (mirror / "cifar10").mkdir(parents=True)
    (mirror / "cifar10" / "cifar-10-jpeg.tar.gz").write_bytes(buffer.getvalue())
    (mirror / "cifar10" / "build_batches.py").write_text(f"FAIL_AFTER = {fail_after}\n" + FAKE_BUILD)
    return {"cifar10/cifar-10-jpeg.tar.gz": sha256(buffer.getvalue())}


def test_does_cifar10_fetch_build_batches_from_the_mirror_atomically(tmp_path, monkeypatch):
    """Does cifar10 fetch verify the JPEG archive, run build_batches.py and rename a complete folder?"""
    checksums = make_cifar_mirror(tmp_path / "mirror")
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(tmp_path / "mirror"))
    folder = fetch("cifar10", tmp_path / "data", checksums=checksums)
    assert [p.name for p in folder.iterdir()] == ["cifar-10-batches-py"]  # no temp build folder left
    images, labels = load_cifar10("train", root=tmp_path / "data")
    assert images.shape == (5, 32, 32, 3) and labels.tolist() == [2] * 5  # script saw the 2-file archive
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_does_a_failed_cifar10_build_leave_no_batches_behind(tmp_path, monkeypatch):
    """If build_batches.py dies halfway, is there no cifar-10-batches-py (nor temp folder) afterwards?"""
    checksums = make_cifar_mirror(tmp_path / "mirror", fail_after=2)
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(RuntimeError, match="build failed halfway"):
        fetch("cifar10", tmp_path / "data", checksums=checksums)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


def test_do_data_root_mirror_root_and_where_follow_the_environment(tmp_path, monkeypatch, capsys):
    """Do data_root and mirror_root follow the env vars (else <repo>/data, None), as `where` prints?"""
    assert data_root() == REPO / "data" and mirror_root() is None
    monkeypatch.setenv("DA6401_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(tmp_path / "m"))
    assert data_root() == tmp_path / "d" and mirror_root() == tmp_path / "m"
    assert main(["where"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "d") in out and str(tmp_path / "m") in out


@pytest.mark.slow
def test_does_mnist_from_the_real_mirror_match_the_official_release(tmp_path, monkeypatch):
    """Does MNIST from the real mirror (../shared/data) verify, with the known shapes, labels, mean?"""
    if not (REAL_MIRROR / "mnist").is_dir():
        pytest.skip(f"real data mirror not found at {REAL_MIRROR} (shared/data next to the repo)")
    monkeypatch.setenv("DA6401_DATA_MIRROR", str(REAL_MIRROR))
    images, labels = load_mnist("train", root=tmp_path)
    test_images, test_labels = load_mnist("test", root=tmp_path)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert images.mean() / 255 == pytest.approx(0.1307, abs=1e-3)
