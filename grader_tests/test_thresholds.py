"""Are the accuracy bars calibrated: the reference clears each with margin, and named weak baselines fail it?

Each figure is read from what the accuracy test cell printed when the sample submission was
autograded (the model the hidden test measured), so the calibration covers the real grading path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat
import pytest

from da6401.grader.generative import FID_BAR, FID_BAR_MARGIN, NEAR_COPY_BAR, TORTUOSITY_BAR

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Bar:
    assignment: str
    notebook: str
    cell: str
    printed: str  # regex with one group: the accuracy (or BLEU) the hidden test printed
    bar: float
    reference_at_least: float  # the margin: the reference must reach this (at most this, when lower is better)
    baselines: tuple[str, ...]  # weak sample submissions that must stay below the bar (above it, when lower is better)
    lower_is_better: bool = False  # a distance rather than an accuracy
    reference: str = "reference"


BARS = [
    Bar("a1_mlp", "mlp_backprop.ipynb", "test_mnist_accuracy",
        r"MNIST test accuracy of the submitted weights \([^)]*\): (\d\.\d+)", 0.97, 0.975,
        ("linear_classifier_only", "relu_grad_mask_inverted")),
    Bar("a2_cnn", "cnn_cifar10.ipynb", "test_checkpoint_accuracy", r"CIFAR-10 test accuracy: (\d\.\d+)", 0.70, 0.85,
        ("linear_classifier_baseline", "mlp_baseline")),
    Bar("a3_seq2seq", "seq2seq_translation.ipynb", "test_checkpoint_bleu",
        r"test_2016_flickr sacreBLEU \(greedy, detokenised\): (\d+\.\d+)", 30.0, 33.0,
        ("no_attention_baseline", "one_epoch_baseline")),
    Bar("a4_generative", "dcgan.ipynb", "dcgan_test_sample_quality", r"Frechet distance (\d+\.\d+)",
        FID_BAR, FID_BAR_MARGIN, ("dcgan_untrained_generator", "dcgan_mode_collapse_single_digit"),
        lower_is_better=True, reference="dcgan_reference"),
    # Generated, not retrieved: the reference's samples are new digits, real digits handed back are not (percent).
    Bar("a4_generative", "dcgan.ipynb", "dcgan_test_sample_quality", r"(\d+)% of 1000 samples lie closer",
        100 * NEAR_COPY_BAR, 35, ("dcgan_returns_training_digits", "dcgan_returns_noisy_training_digits"),
        lower_is_better=True, reference="dcgan_reference"),
    Bar("a4_generative", "dcgan.ipynb", "dcgan_test_sample_quality", r"distance between the ends (\d+\.\d+)",
        TORTUOSITY_BAR, 4.0, ("dcgan_returns_training_digits", "dcgan_returns_noisy_training_digits"),
        lower_is_better=True, reference="dcgan_reference"),
    Bar("a4_generative", "vit.ipynb", "vit_test_checkpoint_accuracy", r"CIFAR-10 test accuracy: (\d\.\d+)", 0.65, 0.67,
        ("vit_no_position_embedding", "vit_one_epoch_baseline"), reference="vit_reference"),
]


def measured_accuracy(course, bar: Bar, student: str) -> float:
    nb = nbformat.read(course / "autograded" / student / bar.assignment / bar.notebook, as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == bar.cell]
    found = re.findall(bar.printed, "".join(o.get("text", "") for o in cell.outputs))
    assert found, f"{student}: the accuracy test printed no accuracy"
    return float(found[-1])


@pytest.mark.parametrize("bar", BARS, ids=lambda b: f"{b.notebook}:{b.printed[:24]}")
def test_reference_clears_the_bar_with_margin_and_weak_baselines_fail_it(autograded, bar):
    """Does the reference reach the margin beyond the bar while each weak baseline, trained the same way, falls short?"""
    course, _ = autograded(bar.assignment)
    sign = -1 if bar.lower_is_better else 1  # compare sign * value, so that higher is always better below
    reference = measured_accuracy(course, bar, bar.reference)
    assert sign * reference >= sign * bar.reference_at_least, (
        f"the reference measures {reference:.4f}: no margin over the bar {bar.bar}")
    for baseline in bar.baselines:
        measured = measured_accuracy(course, bar, baseline)
        assert sign * measured < sign * bar.bar, (
            f"{baseline} measures {measured:.4f}: the {bar.bar} bar does not need the assignment's model")
