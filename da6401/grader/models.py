"""Checks of a student's model class and of what it computes, for the PyTorch assignments (A2-A4).

The hidden tests build a fresh model of the student's class (``make_model()``), so a model
left in some state by the notebook cannot help or hurt, and measure it in float32 on the CPU.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from da6401.grader.checkpoints import count_parameters
from da6401.student.checks import FLOAT32_BAND
from da6401.student.objects import is_instance, type_name


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, a failure in the student's forward reported as a failed check."""
    __tracebackhide__ = True
    from da6401.grader.checks import call_student

    return call_student(f"{type_name(model)} on a batch of shape {tuple(x.shape)}", model, x)


def check_classifier(make_model: Callable[[], torch.nn.Module], input_shape: Sequence[int], num_classes: int,
                     budget: int, required: Sequence[type] = ()) -> torch.nn.Module:
    """Fail unless ``make_model()`` builds a classifier with the stated contract.

    The contract: (N, *input_shape) float inputs -> (N, num_classes) finite logits, in train and
    eval mode and for any N >= 2; at most ``budget`` trainable parameters; at least one layer of
    each type in ``required`` (say ``nn.Conv2d`` for a CNN). In eval mode the model is a function of
    each example: the same logits on every call (no dropout left on) and for an example alone or in a
    batch. Logits, not probabilities: ``F.cross_entropy`` applies the softmax itself. Every parameter
    registered once (one module listed in several places shares its weights: ``[Block()] * depth``).

    Returns:
        The model built, in eval mode.
    """
    __tracebackhide__ = True
    model = make_model()
    n = count_parameters(model)
    print(f"{type_name(model)}: {n:,} trainable parameters (budget {budget:,})")
    assert n <= budget, f"{type_name(model)} has {n:,} trainable parameters; the budget is {budget:,}"
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    unique = {name for name, _ in model.named_parameters()}
    assert len(names) == len(unique), (
        f"{type_name(model)} registers the same parameters under several names ({', '.join(sorted(set(names) - unique)[:3])} "
        "...): one module used in several places, as [Block(...)] * depth does; build a new one for each place")
    for kind in required:
        assert any(is_instance(m, kind) for m in model.modules()), (
            f"{type_name(model)} has no {kind.__name__} layer; this part asks for one")
    g = torch.Generator().manual_seed(10_000)
    for mode, batch in (("train", 3), ("eval", 2), ("eval", 7)):
        model.train(mode == "train")
        x = torch.randn(batch, *input_shape, generator=g)
        with torch.no_grad():
            out = _forward(model, x)
        assert tuple(out.shape) == (batch, num_classes), (
            f"in {mode} mode, a batch of shape {tuple(x.shape)} gave logits of shape {tuple(out.shape)}; "
            f"expected {(batch, num_classes)}")
        assert torch.isfinite(out).all(), f"in {mode} mode the logits are not all finite"
    first = assert_eval_consistent(model, torch.randn(6, *input_shape, generator=g), "logits")
    probabilities = bool((first >= 0).all()) and torch.allclose(first.sum(1), torch.ones(len(first)), atol=1e-4)
    assert not probabilities, ("the model returns probabilities (non-negative, each row summing to 1); return the "
                               "logits: F.cross_entropy applies the softmax itself")
    return model


@torch.no_grad()
def assert_eval_consistent(model: torch.nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """Fail unless ``model`` in eval mode is a function of each example alone: two calls on the batch ``x`` (N, ...)
    agree exactly (nothing random left on), and the first example alone gives its output within the float32 band
    (nothing computed across the batch). Leaves ``model`` in eval mode.

    Returns:
        model(x) in eval mode.
    """
    __tracebackhide__ = True
    model.eval()
    first, again, alone = _forward(model, x), _forward(model, x), _forward(model, x[:1])  # a batch of one
    assert torch.equal(first, again), (
        f"in eval mode two calls on the same batch gave {what} up to {float((first - again).abs().max()):.3g} apart: "
        "something random is still on (F.dropout needs training=self.training; nn.Dropout does that itself)")
    assert alone.shape == first[:1].shape, (
        f"in eval mode a batch of one gave {what} of shape {tuple(alone.shape)}; expected {tuple(first[:1].shape)}")
    gap = float((first[:1] - alone).abs().max())
    assert gap <= FLOAT32_BAND * max(1.0, float(first.abs().max())), (
        f"in eval mode an example's {what} change by up to {gap:.3g} with the rest of its batch: each example's "
        "output must depend on that example alone (BatchNorm in eval mode uses its running statistics)")
    return first


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` (N, ...) that ``model`` in eval mode labels as ``y`` (N,), in float32 on the CPU."""
    __tracebackhide__ = True
    model = model.float().cpu().eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = _forward(model, x[start:start + batch_size])
        correct += int((logits.argmax(dim=1) == y[start:start + batch_size]).sum())
    return correct / len(x)


def assert_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bar: float, name: str) -> float:
    """Print the accuracy of ``model`` on (x, y) and fail below ``bar``.

    Returns:
        The accuracy, a fraction in [0, 1].
    """
    __tracebackhide__ = True
    acc = accuracy(model, x, y)
    print(f"{name}: {acc:.4f} (bar: {bar:.2f})")
    assert acc >= bar, f"{name} is {acc:.4f}; it must be at least {bar:.2f}"
    return acc
