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
