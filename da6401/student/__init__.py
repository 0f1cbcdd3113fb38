"""What runs in the student's kernel: the visible-test magic, the checks it uses, checkpoint helpers.

This package (with :mod:`da6401.data`) is all of the course code a student installs and all of it the sandboxed
kernel can import under autograde; the hidden tests and the grader (:mod:`da6401.grader`) are elsewhere.

In a notebook::

    %load_ext da6401.student
    from da6401.student import assert_close, assert_shape, numerical_gradient, report_gradient_check

Cells that start with ``%%tests`` define pytest-style ``test_*`` functions with plain ``assert``; see
:mod:`da6401.student.magic`.
"""
import os


def under_autograde() -> bool:
    """True while ``nbgrader autograde`` runs the notebook (it sets NBGRADER_EXECUTION=autograde)."""
    return os.environ.get("NBGRADER_EXECUTION") == "autograde"


from da6401.student.checks import (  # noqa: E402
    assert_close,
    assert_shape,
    numerical_gradient,
    rel_error,
    report_gradient_check,
)
from da6401.testcell import points  # noqa: E402

_CHECKPOINTS = ("CheckpointError", "count_parameters", "load_into", "save_weights", "load_translator")


def __getattr__(name: str):
    """The checkpoint helpers import torch: only when asked for (A1 is NumPy only)."""
    if name in _CHECKPOINTS:
        from da6401.student import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module 'da6401.student' has no attribute {name!r}")


def load_ipython_extension(ipython):  # pragma: no cover - exercised through a kernel
    from da6401.student.magic import register

    register(ipython)


__all__ = [
    "CheckpointError",
    "assert_close",
    "assert_shape",
    "count_parameters",
    "load_into",
    "load_translator",
    "numerical_gradient",
    "points",
    "rel_error",
    "report_gradient_check",
    "save_weights",
    "under_autograde",
]
