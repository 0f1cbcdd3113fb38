"""The grading-helper layer shared by every assignment.

Test cells in the notebooks start with ``%%tests`` (see :mod:`da6401.grading.cell`):
the cell defines pytest-style ``test_*`` functions with plain ``assert``; the magic
runs them with pytest and fails the cell, so nbgrader gives it 0, when any of them
fails. The assertions themselves use the helpers below, so that every failure
message states what was compared, the error found and the band it had to be in.

Load it in a notebook with ``%load_ext da6401.grading``.
"""
from da6401.grading.checks import (
    assert_close,
    assert_shape,
    numerical_gradient,
    rel_error,
    report_gradient_check,
    unseen_rng,
)
from da6401.grading.oracles import torch_grads


def load_ipython_extension(ipython):  # pragma: no cover - exercised through nbgrader
    from da6401.grading.cell import register

    register(ipython)


__all__ = [
    "assert_close",
    "assert_shape",
    "numerical_gradient",
    "rel_error",
    "report_gradient_check",
    "torch_grads",
    "unseen_rng",
]
