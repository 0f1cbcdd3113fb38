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


def test_evaluate_under_bf16_autocast_still_passes():
    """Does a correct evaluate that runs the model under bf16 autocast (as fast CPUs do) pass?"""
    def evaluate_autocast(model, loader):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return evaluate_right(model, loader)
    check_evaluate(evaluate_autocast)
