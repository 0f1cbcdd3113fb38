"""Do the training-step checks pass working steps and catch steps that cannot train?"""
from __future__ import annotations

import pytest
import torch

from da6401.grader.training import check_evaluate, check_gradients_do_not_accumulate, check_loss_falls


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))


def data(n: int = 192):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 2, 2, generator=g)
    y = (x.flatten(1)[:, :3].argmax(1))  # learnable labels
    return x, y


def step_zero_first(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_zero_after(model, optimizer, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_no_zero_grad(model, optimizer, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_forgets_optimizer_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.item()


def step_ascends(model, optimizer, x, y):
    optimizer.zero_grad()
    (-torch.nn.functional.cross_entropy(model(x), y)).backward()
    optimizer.step()
    return 0.0


@pytest.mark.parametrize("step", [step_zero_first, step_zero_after])
def test_working_steps_pass_both_checks(step):
    """Do steps that clear gradients (before backward or after step) pass, label smoothing included?"""
    x, y = data()
    check_gradients_do_not_accumulate(step, make_model(), [(x[:64], y[:64]), (x[64:128], y[64:128])])
    before, after = check_loss_falls(step, make_model(), x, y)
    assert after < before


def test_missing_zero_grad_is_caught():
    """Is a step that never clears gradients caught, with the fix in the message?"""
    x, y = data()
    with pytest.raises(AssertionError, match=r"gradients accumulate.*optimizer\.zero_grad\(\)"):
        check_gradients_do_not_accumulate(step_no_zero_grad, make_model(), [(x[:64], y[:64]), (x[64:128], y[64:128])])


@pytest.mark.parametrize("step", [step_forgets_optimizer_step, step_ascends])
def test_steps_that_cannot_train_fail_the_loss_check(step):
    """Is a step without optimizer.step(), or one climbing the loss, caught by the loss check?"""
    x, y = data()
    with pytest.raises(AssertionError, match="a working step cuts it"):
        check_loss_falls(step, make_model(), x, y)


def evaluate_right(model, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def evaluate_mean_of_batches(model, loader):
    model.eval()
    with torch.no_grad():
        accs = [float((model(x).argmax(1) == y).float().mean()) for x, y in loader]
    return sum(accs) / len(accs)


def evaluate_in_train_mode(model, loader):
    with torch.no_grad():
        hits = torch.cat([model(x).argmax(1) == y for x, y in loader])
    return hits.float().mean()  # a 0-d tensor: accepted as a number


def evaluate_with_autograd(model, loader):
    model.eval()
    hits = torch.cat([model(x).argmax(1) == y for x, y in loader])
    return hits.float().mean().item()


def test_correct_evaluate_passes_the_contract():
    """Does an evaluate that counts every example in eval mode under no_grad pass?"""
    check_evaluate(evaluate_right)


@pytest.mark.parametrize("evaluate,message", [
    (evaluate_mean_of_batches, "mean of the per-batch accuracies"),
    (evaluate_in_train_mode, r"stayed in train mode: call model\.eval\(\)"),
    (evaluate_with_autograd, r"autograd on: wrap it in torch\.no_grad\(\)"),
])
def test_broken_evaluate_is_caught_with_the_reason(evaluate, message):
    """Is each way of getting evaluation wrong caught, and named in the message?"""
    with pytest.raises(AssertionError, match=message):
        check_evaluate(evaluate)


def notebook_seeds() -> list[int]:
    """The seeds at which the source notebooks' hidden tests call check_evaluate, and the default."""
    import re

    from da6401.submissions import REPO

    found = {int(s) for nb in (REPO / "source").glob("*/*.ipynb")
             for s in re.findall(r"check_evaluate\(evaluate, seed=(\d+)\)", nb.read_text())}
    assert found, "no notebook calls check_evaluate with a seed any more: update this test"
    return sorted(found | {0})


@pytest.mark.parametrize("seed", notebook_seeds())
@pytest.mark.parametrize("evaluate,message", [
    (evaluate_in_train_mode, r"stayed in train mode"),
    (evaluate_mean_of_batches, "mean of the per-batch accuracies"),
])
def test_a_missing_model_eval_is_caught_at_every_seed_the_notebooks_use(seed, evaluate, message):
    """At each seed a notebook grades with, does an evaluate that never calls model.eval() (or averages batches)
    fail, while the right one passes? (At some seeds, a spy model's train-mode answer could tie the right one.)"""
    check_evaluate(evaluate_right, seed=seed)
    with pytest.raises(AssertionError, match=message):
        check_evaluate(evaluate, seed=seed)


def test_evaluate_under_bf16_autocast_still_passes():
    """Does a correct evaluate that runs the model under bf16 autocast (as fast CPUs do) pass?"""
    def evaluate_autocast(model, loader):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return evaluate_right(model, loader)
    check_evaluate(evaluate_autocast)


# --- train_step and fit on the grader's own parts (A2's contract) ------------------------------------------
import torch.nn.functional as F  # noqa: E402


def a2_train_step(model, optimizer, x, y, label_smoothing=0.0):
    model.train()
    loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_without_train_mode(model, optimizer, x, y, label_smoothing=0.0):
    loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_ignoring_smoothing(model, optimizer, x, y, label_smoothing=0.0):
    return a2_train_step(model, optimizer, x, y)


def step_before_backward(model, optimizer, x, y, label_smoothing=0.0):
    model.train()
    optimizer.zero_grad()
    optimizer.step()  # the step comes before the gradient: the first call changes nothing
    loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    loss.backward()
    return loss.item()


def step_accumulating(model, optimizer, x, y, label_smoothing=0.0):
    model.train()
    loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    loss.backward()  # no zero_grad anywhere
    optimizer.step()
    return loss.item()


@pytest.fixture(scope="module")
def cifar_batch(needs_data):
    from da6401.grader.cifar import normalised

    return normalised("train", n=256, seed=8)


def test_a_train_step_that_follows_the_contract_passes_on_the_exact_model(cifar_batch):
    """Does the contract's train_step (train mode, smoothed loss, zero_grad, backward, step) pass, with a falling
    loss (the margin: 15 % is the bar)?"""
    from da6401.grader.training import check_train_step

    before, after = check_train_step(a2_train_step, *cifar_batch)
    assert after < 0.7 * before, f"the exact model's loss fell only from {before:.3f} to {after:.3f}"


@pytest.mark.parametrize("step,message", [
    (step_without_train_mode, "call model.train"),
    (step_ignoring_smoothing, "the loss without label smoothing"),
    (step_before_backward, "differs from one SGD step"),
    (step_accumulating, "gradients accumulate"),
])
def test_train_step_bugs_are_caught_on_the_exact_model(cifar_batch, step, message):
    """Is a step that leaves an eval-mode model in eval mode, ignores label smoothing, steps before backward or
    never clears gradients caught, with the reason?"""
    from da6401.grader.training import check_train_step

    with pytest.raises(AssertionError, match=message):
        check_train_step(step, *cifar_batch)


def a2_fit(model, optimizer, loader, epochs, val_loader=None, scheduler=None, augment=True, label_smoothing=0.0,
           verbose=True, per_epoch_schedule=False, always_augment=False):
    history = {"train_loss": []} | ({"val_acc": []} if val_loader is not None else {})
    for _ in range(epochs):
        total, batches = 0.0, 0
        for images, labels in loader:
            total += train_step(model, optimizer, preprocess(images, train=augment or always_augment), labels,
                                label_smoothing)
            batches += 1
            if scheduler is not None and not per_epoch_schedule:
                scheduler.step()
        if scheduler is not None and per_epoch_schedule:
            scheduler.step()
        history["train_loss"].append(total / batches)
        if val_loader is not None:
            history["val_acc"].append(evaluate(model, val_loader))
    return history


train_step = preprocess = evaluate = None  # what a2_fit's namespace holds; the check puts its spies here


@pytest.mark.parametrize("fit,message", [
    (lambda *a, **k: a2_fit(*a, **k, per_epoch_schedule=True), "stepped the scheduler 2 times"),
    (lambda *a, **k: a2_fit(*a, **k, always_augment=True), r"augment=False\) called preprocess with train=\[True"),
])
def test_fit_loop_passes_the_contract_and_catches_a_per_epoch_schedule_and_ignored_augment(fit, message):
    """Does the contract's fit pass, and is one that steps a per-step schedule once per epoch, or augments
    whatever augment says, caught?"""
    from da6401.grader.training import check_fit_loop

    check_fit_loop(a2_fit)
    with pytest.raises(AssertionError, match=message):
        check_fit_loop(fit)
