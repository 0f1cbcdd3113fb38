"""Is Assignment 1's 97 % MNIST bar calibrated: the reference clears it with margin, a linear model does not?"""
from __future__ import annotations

import re

import nbformat
import pytest

pytestmark = pytest.mark.slow
ACCURACY = re.compile(r"MNIST test accuracy: (\d\.\d+)")


def _measured_accuracy(course, student: str) -> float:
    nb = nbformat.read(course / "autograded" / student / "a1_mlp" / "mlp_backprop.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_mnist_accuracy"]
    found = ACCURACY.findall("".join(o.get("text", "") for o in cell.outputs))
    assert found, f"{student}: the accuracy test printed no accuracy"
    return float(found[-1])


def test_reference_clears_the_bar_with_margin_and_linear_baseline_fails_it(autograded):
    """Does the reference reach >= 97.5 % while softmax regression, trained the same way, stays below 97 %?"""
    course, _ = autograded("a1_mlp")
    reference = _measured_accuracy(course, "reference")
    baseline = _measured_accuracy(course, "linear_classifier_only")
    assert reference >= 0.975, f"reference accuracy {reference:.4f} has no margin over the 0.97 bar"
    assert baseline < 0.97, f"a linear classifier reaches {baseline:.4f}: the 0.97 bar does not need an MLP"
