"""Numerical checks with failure messages a student can act on, and the tolerance bands every check uses.

Relative-error bands follow CS231n: in float64 a faithful re-implementation is below 1e-7, an analytic gradient
against central differences below 1e-6 (smooth functions); above 1e-2 it is wrong. Each band below says why it
is what it is: the dtype the contract allows and the conditioning of what is compared. Every bug the tests name
(a missing term, a wrong axis, a forgotten scale) is above 1e-2, far outside all of them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# float64, the same formula as the oracle's, maybe summed in another order: agreement to ~1e-15 per operation, and
# to ~1e-12 after sums of thousands of terms; 1e-7 leaves room for a stable but different formulation
# (log-sum-exp against softmax-then-log) without letting a real mistake through.
GOOD_BAND = 1e-7
# float64 analytic gradient against central differences with h = 1e-5: truncation O(h^2) ~ 1e-10 and rounding
# ~ eps / h ~ 1e-11 relative for well-scaled smooth functions; ~1e-8 is typical, 1e-6 is CS231n's "ok".
FD_BAND = 1e-6
# float32 (the dtype a PyTorch model or a NumPy student computes in by default) against a float64 oracle:
# eps32 = 1.2e-7, grown by the sums and products of a layer (hundreds of terms) to ~1e-6; 1e-5 is the band.
FLOAT32_BAND = 1e-5
# A scalar loss of float32 logits (a mean over a batch of softplus or log-softmax terms) against the float64
# oracle, relative: ~1e-6 from float32 rounding, up to ~1e-5 where the student's stable form differs from the
# oracle's (softplus vs BCE-with-logits); 1e-4 keeps a factor of ten from both and 1e-2 from any real bug.
LOSS_BAND = 1e-4
# Six float64 optimiser steps against torch.optim with the same hyper-parameters: ~1e-15 per step; 1e-9 still
# tells "sqrt(s) + eps" from "sqrt(s + eps)" (eps = 1e-8 moves a step by ~1e-8 relative where s is small).
OPTIMIZER_BAND = 1e-9
# An accuracy, a fraction k / n, returned as float32 (0.6 is 0.6000000238): 6e-8 off at most.
FRACTION_BAND = 1e-6
WRONG_BAND = 1e-2


def as_array(value, name: str = "value", dtype=None) -> np.ndarray:
    """``value`` as a NumPy array: arrays, tensors (detached, on the CPU), numbers and nested lists of them.

    Raises:
        AssertionError: for anything else, such as an object of the notebook that only looks like an array
            (in the grader such objects stay in the kernel, and their ``shape`` or ``__eq__`` count for nothing).
    """
    __tracebackhide__ = True
    from da6401.student.objects import is_remote, type_name

    if is_remote(value):
        raise AssertionError(f"{name}: expected an array, got a {type_name(value)} object")
    if hasattr(value, "detach") and hasattr(value, "cpu") and type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        value = value.float() if str(value.dtype) == "torch.bfloat16" else value
        value = value.numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{name}: expected an array, got {type(value).__name__} ({e})") from None


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    """Largest elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)``.

    Args:
        x, y: arrays of the same shape (anything ``np.asarray`` accepts).
    Returns:
        A float >= 0; ``inf`` if either input has a NaN or an infinity.
    """
    x = as_array(x, "the value compared", np.float64)
    y = as_array(y, "the reference", np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("inf")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _preview(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=6, threshold=12, edgeitems=3)


def assert_shape(actual, shape: tuple, name: str = "output") -> None:
    """Fail unless ``actual`` is an array of exactly ``shape``.

    Raises:
        AssertionError: naming ``name``, the expected and the actual shape.
    """
    __tracebackhide__ = True  # pytest reports the caller's line, not this helper's
    from da6401.student.objects import is_remote, type_name

    got = None if is_remote(actual) else getattr(actual, "shape", None)
    assert got is not None, f"{name}: expected an array of shape {shape}, got {type_name(actual)}"
    assert tuple(got) == tuple(shape), f"{name}: expected shape {tuple(shape)}, got {tuple(got)}"


def assert_close(actual, expected, tol: float = GOOD_BAND, name: str = "output") -> None:
    """Fail unless ``actual`` matches ``expected`` in shape and to relative error ``tol``.

    Args:
        actual: the student's value.
        expected: the oracle's value.
        tol: the largest relative error accepted (see :func:`rel_error`).
        name: what is compared, used in the failure message.
    Raises:
        AssertionError: with the shapes or the error, the band and a preview of both arrays.
    """
    __tracebackhide__ = True
    if actual is None:
        raise AssertionError(f"{name}: got None; did the function forget to return its result?")
    expected = as_array(expected, f"{name} (reference)")
    actual = as_array(actual, name)
    assert_shape(actual, expected.shape, name)
    err = rel_error(actual, expected)
    assert err <= tol, (
        f"{name}: relative error {err:.2e} is outside the band <= {tol:.0e}\n"
        f"  expected {_preview(expected)}\n"
        f"  got      {_preview(actual)}"
    )


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function, in float64.

    Args:
        f: maps an array shaped like ``x`` to a float. It is called with ``x``
           itself, perturbed in place one entry at a time and restored.
        x: float64 array of any shape.
        h: step size.
    Returns:
        grad: array shaped like ``x``, ``(f(x + h e_i) - f(x - h e_i)) / 2h`` per entry.
    """
    assert x.dtype == np.float64, "numerical gradients are only meaningful in float64"
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def report_gradient_check(analytic, numeric, name: str = "gradient", band: float = FD_BAND) -> float:
    """Print the relative error of an analytic gradient and the band it must be in; fail outside it.

    Returns:
        The relative error, so callers can log it.
    """
    __tracebackhide__ = True
    err = rel_error(analytic, numeric)
    verdict = "ok" if err <= band else ("WRONG" if err > WRONG_BAND else "suspicious")
    print(f"{name}: relative error {err:.2e} (must be <= {band:.0e}; > {WRONG_BAND:.0e} means a bug) -> {verdict}")
    assert_close(analytic, numeric, tol=band, name=name)
    return err
