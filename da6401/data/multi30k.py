"""Multi30k (task 1): image captions in German and English, one sentence per line, line-aligned."""
import gzip
from pathlib import Path

from .fetch import check_not_withheld, dataset_file, fetch

SPLITS = ("train", "val", "test_2016_flickr")  # 29,000 / 1,014 / 1,000 sentence pairs
LANGS = ("de", "en")


def load_multi30k(split: str = "train", langs: tuple[str, ...] = ("de", "en"),
                  root: Path | str | None = None) -> list[tuple[str, ...]]:
    """Load a Multi30k split as aligned sentence tuples, fetching it first if needed.

    Args:
        split: "train", "val" or "test_2016_flickr".
        langs: languages, in the order they appear in each tuple (from "de", "en").
        root: data root (files in root/multi30k, e.g. train.de.gz); defaults to data_root().
    Returns:
        One tuple per line, e.g. [("Zwei junge ...", "Two young ..."), ...] for langs=("de", "en");
        sentences keep everything but the trailing newline.
    Raises:
        ValueError: unknown split or language, or files with different line counts.
        DatasetMissingError, ChecksumError: see fetch(); DatasetWithheldError while graded, for a test split.
    """
    if split not in SPLITS or not set(langs) <= set(LANGS):
        raise ValueError(f"unknown split {split!r} or languages {langs}; "
                         f"expected a split in {SPLITS} and languages from {LANGS}")
    check_not_withheld("multi30k", split)
    folder = fetch("multi30k", root)
    paths = [dataset_file(folder, f"{split}.{lang}") for lang in langs]
    columns = []
    for path in paths:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
            columns.append([line.rstrip("\n") for line in f])
    counts = [len(c) for c in columns]
    if len(set(counts)) > 1:
        raise ValueError("Multi30k files are not line-aligned: "
                         + ", ".join(f"{p.name} has {n} lines" for p, n in zip(paths, counts)))
    return list(zip(*columns))
