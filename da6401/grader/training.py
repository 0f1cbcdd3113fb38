"""Checks of a student's training step, loop and evaluation, for assignments graded from a checkpoint (A2-A4).

A good checkpoint says nothing about the code that was submitted with it, so the
hidden tests also run the student's own training step, briefly, on a fixed batch.
The step follows this contract (stated in the notebooks):

    train_step(model, optimizer, x, y, label_smoothing=0.0) -> float
        One optimisation step on one batch, in train mode: clear old gradients, forward, loss
        (cross-entropy with the given label smoothing), backward, optimizer.step(). Returns the batch loss.

Either order of clearing (``zero_grad()`` before ``backward()``, or after ``step()``)
is accepted; never clearing is not.

:func:`check_train_step` and :func:`check_fit_loop` run the student's functions on the grader's own parts (a
small exact CNN, spies in place of the notebook's helpers), beside them in their kernel, and judge what comes
back: so a bug in the student's model costs the model's cell, not this one.
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
    change = _second_step_change(train_step, model, batches, lr, seed)
    assert change < 1e-5, (f"train_step: the second step differs by up to {change:.3g} from the same step with "
                           "cleared gradients, so gradients accumulate across steps; call optimizer.zero_grad() "
                           "before loss.backward()")


def _second_step_change(train_step: Callable, model: torch.nn.Module, batches, lr: float = 0.05, seed: int = 0) -> float:
    """The largest parameter difference between a second step after a first and the same second step from a
    copy with cleared gradients (see :func:`check_gradients_do_not_accumulate`)."""
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
    return _max_change(model, clean)


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


def _loss_before_after(train_step: Callable, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                       batch_size: int, lr: float, seed: int) -> tuple[float, float]:
    """The eval-mode loss on (x, y) before and after ``steps`` Adam steps (see :func:`check_loss_falls`)."""
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
    return before, loss()


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
    before, after = _loss_before_after(train_step, model, x, y, steps, batch_size, lr, seed)
    assert after == after and after <= (1 - min_drop) * before, (
        f"train_step: {steps} steps on a fixed set of {len(x)} examples took the loss from {before:.4f} to "
        f"{after:.4f}; a working step cuts it by at least {min_drop:.0%}")
    return before, after


class _ExactConvNet(torch.nn.Module):
    """The grader's small CIFAR-shaped CNN, (N, 3, 32, 32) -> (N, 10): BatchNorm, so train and eval mode differ,
    and a wide head init, so the logits are far from uniform (label smoothing changes the loss). It notes its
    mode at every forward pass."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 10)
        with torch.no_grad():
            self.head.weight.mul_(8.0)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.head(self.body(x))


def _train_step_facts(train_step, x, y, seed: int, lr: float = 0.05, smoothing: float = 0.1) -> dict:
    """Beside the student's ``train_step`` (in its kernel): one step on a fresh exact CNN handed over in eval mode
    (as evaluate() leaves a model), with SGD and label smoothing, against the same step done by the contract on a
    copy; then the gradient-accumulation and falling-loss runs. Returns plain numbers."""
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = _ExactConvNet().eval()
    oracle = copy.deepcopy(model).train()
    xb, yb = x[:32], y[:32]
    loss = train_step(model, torch.optim.SGD(model.parameters(), lr=lr), xb, yb, label_smoothing=smoothing)
    number = isinstance(loss, (int, float)) or (torch.is_tensor(loss) and loss.numel() == 1)
    facts = {"modes": list(model.modes), "loss_type": type(loss).__name__, "loss": float(loss) if number else None}
    logits = oracle(xb)
    want = F.cross_entropy(logits, yb, label_smoothing=smoothing)
    facts["expected"], facts["unsmoothed"] = want.item(), F.cross_entropy(logits.detach(), yb).item()
    want.backward()
    steps = [lr * p.grad for p in oracle.parameters()]
    with torch.no_grad():
        errors = [float((p_old - step - p_new).abs().max()) for p_old, step, p_new
                  in zip(oracle.parameters(), steps, model.parameters())]
    facts["update_error"] = max(errors) / max(float(s.abs().max()) for s in steps)
    torch.manual_seed(seed + 1)
    facts["second_step_change"] = _second_step_change(train_step, _ExactConvNet(), [(x[:32], y[:32]), (x[32:64], y[32:64])])
    torch.manual_seed(seed + 2)
    facts["before"], facts["after"] = _loss_before_after(train_step, _ExactConvNet(), x, y, steps=30, batch_size=64,
                                                         lr=1e-2, seed=seed)
    return facts


TRAIN_STEP_LOSS_BAND = 3e-2  # the returned loss against the oracle's: float32, or bf16 autocast (~1e-2) on CPUs with it
UPDATE_BAND = 0.1            # the step taken against SGD on the oracle's gradient, as a fraction of the step (bf16 ~1e-2)


def check_train_step(train_step: Callable, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Fail unless ``train_step`` follows its contract on the grader's exact CNN: it trains in train mode (the
    model handed over in eval mode), returns the batch's cross-entropy with the label smoothing it is given,
    takes one optimiser step on that loss's gradient, never lets gradients accumulate, and 30 steps cut the loss
    on a fixed set.

    Args:
        x, y: at least 64 CIFAR-10 training inputs (N, 3, 32, 32) and labels.
    Returns:
        (loss before, loss after) the 30 steps, to print.
    """
    __tracebackhide__ = True
    from da6401.grader.checks import call_student
    from da6401.student.objects import run_beside

    facts = call_student("train_step", run_beside, train_step, _train_step_facts, train_step, x, y, seed)
    assert facts["modes"], "train_step never ran the model"
    assert all(facts["modes"]), ("train_step ran the model in eval mode; it was handed over in eval mode (as "
                                 "evaluate() leaves it): call model.train() first")
    assert facts["loss"] is not None, f"train_step returned {facts['loss_type']}; return the loss as a float"
    got, want, plain = facts["loss"], facts["expected"], facts["unsmoothed"]
    if abs(got - plain) < abs(got - want):
        raise AssertionError(f"train_step(..., label_smoothing=0.1) returned {got:.4f}, the loss without label "
                             f"smoothing ({plain:.4f}; smoothed: {want:.4f}): pass label_smoothing to F.cross_entropy")
    assert abs(got - want) <= TRAIN_STEP_LOSS_BAND * max(1.0, abs(want)), (
        f"train_step returned {got:.4f}; the batch's cross-entropy (label smoothing 0.1) is {want:.4f}")
    assert facts["update_error"] <= UPDATE_BAND, (
        f"the step train_step took differs from one SGD step on that loss's gradient by {facts['update_error']:.0%} "
        "of the step: backward() the loss, then optimizer.step(), once per call")
    assert facts["second_step_change"] < 1e-5, (
        f"train_step: the second step differs by up to {facts['second_step_change']:.3g} from the same step with "
        "cleared gradients, so gradients accumulate across steps; call optimizer.zero_grad() before loss.backward()")
    before, after = facts["before"], facts["after"]
    assert after == after and after <= 0.85 * before, (
        f"train_step: 30 steps on a fixed set of {len(x)} examples took the loss from {before:.4f} to {after:.4f}; "
        "a working step cuts it by at least 15%")
    return before, after


class _FitSpies:
    """Stand-ins for what the notebook's ``fit`` calls (train_step, preprocess, evaluate) and for its
    scheduler: they note every call and return known values."""

    def __init__(self):
        self.steps, self.preprocessed, self.evaluated, self.scheduled = [], [], 0, 0

    def train_step(self, model, optimizer, x, y, label_smoothing=0.0):
        self.steps.append({"label_smoothing": float(label_smoothing), "float": bool(x.is_floating_point())})
        return float(len(self.steps))  # 1.0, 2.0, ...: the history must hold their mean per epoch

    def preprocess(self, images, train, *args, **kwargs):
        self.preprocessed.append(bool(train))
        return images.float() / 255.0

    def evaluate(self, model, loader):
        self.evaluated += 1
        return 0.5 + 0.01 * self.evaluated

    def step(self):  # the scheduler's
        self.scheduled += 1


def _fit_facts(fit, runs: list[dict]) -> list[dict]:
    """Beside the student's ``fit`` (in its kernel): run it with spies for train_step, preprocess and evaluate
    (put in its namespace for the call) over a loader of 3 batches of uint8 images, once per keyword set in
    ``runs``. Returns, per run, what the spies saw and the history fit returned."""
    namespace = fit.__globals__
    names = ("train_step", "preprocess", "evaluate")
    saved = {name: namespace.get(name) for name in names}
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(4)) for _ in range(3)]
    facts = []
    try:
        for kwargs in runs:
            spies = _FitSpies()
            namespace.update({name: getattr(spies, name) for name in names})
            model = torch.nn.Linear(1, 1)
            history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, 2, val_loader=loader[:1],
                          scheduler=spies, verbose=False, **kwargs)
            facts.append({"steps": spies.steps, "preprocessed": spies.preprocessed, "evaluated": spies.evaluated,
                          "scheduled": spies.scheduled,
                          "history": {k: [float(v) for v in vs] for k, vs in history.items()}
                          if isinstance(history, dict) else None})
    finally:
        namespace.update(saved)
    return facts


def check_fit_loop(fit: Callable) -> None:
    """Fail unless ``fit(model, optimizer, loader, epochs, val_loader, scheduler, augment, label_smoothing)``
    runs every batch of every epoch through ``preprocess(images, train=augment)`` and ``train_step`` (with the
    label smoothing it is given), steps the (per-step) scheduler after every batch, and returns the per-epoch
    mean of train_step's losses and one validation accuracy per epoch."""
    __tracebackhide__ = True
    from da6401.grader.checks import call_student
    from da6401.student.objects import run_beside

    runs = [{"augment": False, "label_smoothing": 0.2}, {"augment": True}]
    for facts, kwargs in zip(call_student("fit", run_beside, fit, _fit_facts, fit, runs), runs):
        steps = facts["steps"]
        assert len(steps) == 6, f"fit ran train_step {len(steps)} times over 2 epochs of 3 batches; expected 6"
        assert all(s["float"] for s in steps), "fit passed uint8 images to train_step: preprocess them first"
        assert facts["preprocessed"] == [kwargs["augment"]] * 6, (
            f"fit(..., augment={kwargs['augment']}) called preprocess with train={facts['preprocessed']}; prepare "
            "every batch with preprocess(images, train=augment)")
        smoothing = kwargs.get("label_smoothing", 0.0)
        assert all(abs(s["label_smoothing"] - smoothing) < 1e-12 for s in steps), (
            f"fit(..., label_smoothing={smoothing}) passed label_smoothing="
            f"{sorted({s['label_smoothing'] for s in steps})} to train_step")
        assert facts["scheduled"] == 6, (f"fit stepped the scheduler {facts['scheduled']} times over 6 batches: "
                                         "the schedules here are per step (call scheduler.step() after every batch)")
        history = facts["history"]
        assert history is not None, "fit must return the history dict"
        assert history.get("train_loss") == [2.0, 5.0], (
            f"history['train_loss'] is {history.get('train_loss')}; with train_step returning 1, 2, ..., 6 it must "
            "be the mean over each epoch's batches, [2.0, 5.0]")
        assert history.get("val_acc") == [0.51, 0.52] and facts["evaluated"] == 2, (
            f"history['val_acc'] is {history.get('val_acc')}: evaluate on val_loader once per epoch")


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
