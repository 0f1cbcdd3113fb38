"""Do the model checks pass a conforming classifier and name what is wrong with one that is not?"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from da6401.grader.models import accuracy, assert_accuracy, check_classifier


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


def test_conforming_cnn_passes_and_comes_back_in_eval_mode():
    """Does a small CNN within budget pass, and is the model returned in eval mode?"""
    model = check_classifier(tiny_cnn, (3, 8, 8), num_classes=10, budget=200, required=(nn.Conv2d,))
    assert not model.training


@pytest.mark.parametrize("make_model,budget,message", [
    (tiny_cnn, 100, "170 trainable parameters; the budget is 100"),  # conv 3*4*9 + 4, BN 4 + 4, linear 4*10 + 10
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), 10_000, "has no Conv2d layer"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 10_000, r"gave logits of shape \(3, 144\)"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 10)), 10_000,
     r"on a batch of shape \(3, 3, 8, 8\) raised RuntimeError"),
])
def test_nonconforming_models_are_named(make_model, budget, message):
    """Are an over-budget model, a model without convolutions, wrong logits and a crashing forward each named?"""
    with pytest.raises(AssertionError, match=message):
        check_classifier(make_model, (3, 8, 8), num_classes=10, budget=budget, required=(nn.Conv2d,))


class FunctionalDropout(nn.Module):
    """tiny_cnn with F.dropout before the head: training=True by default, so it stays on in eval mode."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Sequential(*list(tiny_cnn())[:-1]), nn.Linear(4, 10)

    def forward(self, x):
        return self.head(nn.functional.dropout(self.body(x), 0.5))


class BatchStatistics(nn.Module):
    """Standardises the features over the batch in every mode: an example's logits depend on its batch."""

    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, x):
        z = self.net(x)
        return (z - z.mean(0)) / (z.std(0) + 1e-5) if len(z) > 1 else z


@pytest.mark.parametrize("make_model,message", [
    (FunctionalDropout, "something random is still on"),
    (BatchStatistics, "change by up to .* with the rest of its batch"),
    (lambda: nn.Sequential(tiny_cnn(), nn.Softmax(dim=1)), "returns probabilities"),
])
def test_eval_mode_must_be_a_deterministic_function_of_each_example_giving_logits(make_model, message):
    """Is dropout left on in eval mode, an output that depends on the rest of the batch (or a batch of one), or a
    softmax at the end caught (while tiny_cnn, with BatchNorm, passes above)?"""
    with pytest.raises(AssertionError, match=message):
        check_classifier(make_model, (3, 8, 8), num_classes=10, budget=10_000, required=(nn.Conv2d,))


def test_accuracy_counts_every_example_in_eval_mode():
    """Is the accuracy of a model that is right on 7 of 10 inputs 0.7, with dropout off?"""
    x = torch.eye(10)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])
    model = nn.Sequential(nn.Dropout(0.9), nn.Identity()).train()
    assert accuracy(model, x, y, batch_size=3) == pytest.approx(0.7)


def test_assert_accuracy_prints_the_figure_and_fails_below_the_bar(capsys):
    """Does the accuracy check print the measured figure, and fail below the bar with both numbers?"""
    x, y = torch.eye(4), torch.tensor([0, 1, 2, 0])
    assert assert_accuracy(nn.Identity(), x, y, bar=0.7, name="toy accuracy") == 0.75
    assert "toy accuracy: 0.7500 (bar: 0.70)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="toy accuracy is 0.7500; it must be at least 0.80"):
        assert_accuracy(nn.Identity(), x, y, bar=0.8, name="toy accuracy")
