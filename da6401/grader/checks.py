"""Building blocks of the hidden tests: unseen inputs, and calling the student's code with a clear failure.

The comparison helpers (``assert_close`` and friends) are the visible ones, :mod:`da6401.student.checks`: the
same functions judge the visible tests in the student's kernel and every test in the grader.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from da6401.student.checks import assert_close, assert_shape, numerical_gradient, rel_error, report_gradient_check

__all__ = ["assert_close", "assert_shape", "call_student", "numerical_gradient", "rel_error",
           "report_gradient_check", "unseen_rng"]


def unseen_rng(seed: int) -> np.random.Generator:
    """The random generator hidden tests draw their inputs from.

    Hidden tests use seeds that the visible tests never use, so a solution that
    special-cases the visible inputs still meets inputs it has not seen.
    """
    return np.random.default_rng(10_000 + seed)


def call_student(what: str, fn: Callable, *args, **kwargs):
    """``fn(*args)``, where fn is the student's code: an exception it raises becomes a failed check
    (an AssertionError saying "<what> raised <type>: <message>", with the student's own traceback when it came
    through the grader's channel), not an error in the grader."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        from da6401.grader.channel import KernelGone, StudentError

        if isinstance(e, KernelGone):
            raise
        if isinstance(e, StudentError):
            where = e.student_traceback.rstrip()
            raise AssertionError(f"{what} raised {e.type_name}: {e.message}" + (f"\n{where}" if where else "")) from None
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}") from None
