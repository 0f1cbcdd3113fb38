"""Where the test cell being graded is: its submission's folder, for every file a check opens.

The grader sets it around each test cell (:func:`grading`); checks call :func:`submitted_file` for the files
they read (a checkpoint, experiment results). Outside grading (the grading layer's own tests) a name is a
plain path.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

_SUBMISSION: Path | None = None


@contextmanager
def grading(folder: Path):
    """Within the block, :func:`submitted_file` resolves names in ``folder`` (a submission)."""
    global _SUBMISSION
    saved, _SUBMISSION = _SUBMISSION, Path(folder).resolve()
    try:
        yield
    finally:
        _SUBMISSION = saved


def submitted_file(name) -> Path:
    """The submission's file ``name``; while grading, only a regular file inside the submission's folder.

    Raises:
        FileNotFoundError: while grading, for a name outside the folder (absolute, ``..``) or a symlink.
    """
    if _SUBMISSION is None:
        return Path(name)
    relative = Path(str(name))
    if relative.is_absolute() or ".." in relative.parts:
        raise FileNotFoundError(f"{name}: the grader reads only the submission's own files")
    path = _SUBMISSION / relative
    if path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(_SUBMISSION)):
        raise FileNotFoundError(f"{name} is a link; submit the file itself")
    return path
