"""Checks of a student's training step, for assignments graded from a checkpoint (A2-A4).

A good checkpoint says nothing about the code that was submitted with it, so the
hidden tests also run the student's own training step, briefly, on a fixed batch.
The step follows this contract (stated in the notebooks):

    train_step(model, optimizer, x, y) -> float
        One optimisation step on one batch: clear old gradients, forward, loss,
        backward, optimizer.step(). Returns the batch loss.

Either order of clearing (``zero_grad()`` before ``backward()``, or after ``step()``)
is accepted; never clearing is not.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from da6401.student.checks import FRACTION_BAND
from da6401.student.objects import is_instance, kernel_of


def _max_change(a: torch.nn.Module, b: torch.nn.Module) -> float:
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def check_gradients_do_not_accumulate(train_step: Callable, model: torch.nn.Module, batches, lr: float = 0.05,
                                      seed: int = 0) -> None:
    """Fail if a second step still feels the first step's gradients (no ``zero_grad`` anywhere).

    Runs two steps on ``model`` with plain SGD; then repeats the second step on a copy of the
    model as it was after the first step, with its gradients cleared. Both must agree.

    Args:
        train_step: the student's function (see the module docstring).
        model: a freshly built model of the student's class (it is trained in place).
        batches: two (x, y) pairs.
    Raises:
        AssertionError: when the two second steps differ.
    """
    __tracebackhide__ = True
    (x1, y1), (x2, y2) = batches
    kernel = kernel_of(model)  # optimisers and seeds where the model lives: the student's kernel, in the grader
    optim, seed_rng = kernel.module("torch.optim"), kernel.module("torch").manual_seed
    optimizer = optim.SGD(model.parameters(), lr=lr)
    seed_rng(seed)
    train_step(model, optimizer, x1, y1)
    clean = copy.deepcopy(model)
    clean.zero_grad(set_to_none=True)
    seed_rng(seed + 1)
    train_step(model, optimizer, x2, y2)
    seed_rng(seed + 1)
    train_step(clean, optim.SGD(clean.parameters(), lr=lr), x2, y2)
    change = _max_change(model, clean)
    assert change < 1e-5, (f"train_step: the second step differs by up to {change:.3g} from the same step with "
                           "cleared gradients, so gradients accumulate across steps; call optimizer.zero_grad() "
                           "before loss.backward()")


def _recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace every BatchNorm layer's running statistics by their exact average over ``x`` (no grad).

    After a few dozen steps the running averages still lag the weights, and eval-mode losses
    measured with them swing either way; recalibrated, they measure the weights themselves.
    """
    norms = [m for m in model.modules() if is_instance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def check_loss_falls(train_step: Callable, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     steps: int = 30, batch_size: int = 64, lr: float = 2e-3, min_drop: float = 0.15,
                     seed: int = 0) -> tuple[float, float]:
    """Fail unless ``steps`` training steps on a small fixed set cut its loss by ``min_drop`` (a fraction).

    The optimiser is Adam at ``lr``: its steps have the same size whatever the architecture's
    gradient scale, so one setting suits every reasonable model (SGD at one learning rate is too
    slow for some nets and diverges for others). The loss is plain cross-entropy of ``model`` in
    eval mode on all of ``x``, before and after, with BatchNorm statistics recalibrated on ``x``.
    A step that does not update, or climbs the loss, leaves it flat or higher.

    Returns:
        (loss before, loss after), to print.
    Raises:
        AssertionError: naming both losses when the drop is too small (or the loss is not finite).
    """
    __tracebackhide__ = True

    def loss() -> float:
        _recalibrate_batchnorm(model, x, batch_size)
        model.eval()
        with torch.no_grad():
            value = float(torch.nn.functional.cross_entropy(model(x), y))
        model.train()
        return value

    kernel = kernel_of(model)
    kernel.module("torch").manual_seed(seed)
    before = loss()
    optimizer = kernel.module("torch.optim").Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        train_step(model, optimizer, x[idx], y[idx])
    after = loss()
    assert after == after and after <= (1 - min_drop) * before, (
        f"train_step: {steps} steps on a fixed set of {len(x)} examples took the loss from {before:.4f} to "
        f"{after:.4f}; a working step cuts it by at least {min_drop:.0%}")
    return before, after


class _ModeSpy(torch.nn.Module):
    """A fixed classifier for :func:`check_evaluate`: in eval mode its logits are the first ``classes`` features;
    in train mode it votes for the next class instead, which the labels never are, so an ``evaluate`` that forgets
    ``model.eval()`` scores 0 whatever the data. It counts its calls with autograd on in a buffer (buffers come
    back from the kernel with the model's state).

    Elementwise ops only, so a student's mixed-precision autocast in ``evaluate`` cannot round near-tied logits
    differently from the expected answer.
    """

    def __init__(self, classes: int):
        super().__init__()
        self.n_classes = classes
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("calls_with_grad", torch.zeros((), dtype=torch.long))

    def logits(self, x):
        return x[:, :self.n_classes] * self.scale

    def forward(self, x):
        if torch.is_grad_enabled():
            self.calls_with_grad += 1
        logits = self.logits(x)
        if self.training:
            shifted = (logits.argmax(1) + 1) % self.n_classes
            logits = logits + 100.0 * torch.nn.functional.one_hot(shifted, self.n_classes)
        return logits


def _evaluate_case(seed: int, n: int = 103, classes: int = 4, batch_size: int = 25):
    """Inputs and labels on which the right answer, a mean of per-batch accuracies and train mode all differ."""
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(n, 6, generator=g)
    predicted = x[:, :classes].argmax(1)
    wrong = torch.rand(n, generator=g) < 0.4
    wrong[-(n % batch_size):] = False  # the short last batch all right: weighing batches alike then differs
    y = torch.where(wrong, (predicted + 2) % classes, predicted)  # never predicted + 1, the train-mode vote
    return x, y


def check_evaluate(evaluate: Callable, seed: int = 0) -> None:
    """Fail unless ``evaluate(model, loader) -> float`` is the accuracy over the whole loader.

    Contract: the model in eval mode (dropout off, BatchNorm running statistics), no autograd
    graph (``torch.no_grad()``), every example counted once, a last batch smaller than the rest
    weighed by its size (not a mean of per-batch accuracies).

    Raises:
        AssertionError: naming which part of the contract is broken.
    """
    __tracebackhide__ = True
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _evaluate_case(seed)
    model = _ModeSpy(4).train()
    with torch.no_grad():
        expected = float((model.logits(x).argmax(1) == y).float().mean())
        by_batch = sum(float((model.logits(x[i:i + 25]).argmax(1) == y[i:i + 25]).float().mean())
                       for i in range(0, len(x), 25)) / len(range(0, len(x), 25))
    got = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=25))
    assert type(got) in (float, int) or (isinstance(got, torch.Tensor) and got.numel() == 1), (
        f"evaluate returned {type(got).__name__}; return the accuracy as a float")
    got = float(got)
    assert abs(got - expected) < FRACTION_BAND, (
        f"evaluate gave {got:.4f} on {len(x)} examples in batches of 25; their accuracy is {expected:.4f}"
        + (" (that is the mean of the per-batch accuracies: weigh each batch by its size)"
           if abs(got - by_batch) < FRACTION_BAND else "")
        + (" (the model stayed in train mode: call model.eval())" if got == 0.0 else ""))
    assert int(model.calls_with_grad) == 0, "evaluate ran the model with autograd on: wrap it in torch.no_grad()"
