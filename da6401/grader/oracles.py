"""PyTorch as the oracle: reference values computed in float64 with autograd.

Torch is imported lazily: only hidden tests call these, never the student's code.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def torch_grads(fn: Callable, inputs: Sequence[np.ndarray], upstream: np.ndarray | None = None):
    """Value of ``fn`` and the gradients of ``sum(upstream * fn(*inputs))`` w.r.t. every input.

    Args:
        fn: a function of torch tensors returning one tensor.
        inputs: NumPy arrays, converted to float64 tensors that require grad.
        upstream: the upstream gradient dL/d(output), shaped like the output;
            ``None`` for a scalar output (treated as 1).
    Returns:
        (out, grads): ``out`` as a float64 NumPy array and a list of NumPy
        gradients, one per input, each shaped like that input.
    """
    import torch

    tensors = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in inputs]
    out = fn(*tensors)
    seed = torch.ones_like(out) if upstream is None else torch.tensor(np.asarray(upstream, dtype=np.float64))
    out.backward(seed)
    return out.detach().numpy(), [t.grad.numpy() if t.grad is not None else np.zeros(t.shape) for t in tensors]


def check_optimizer_against_torch(optimizer, torch_name: str, torch_kwargs: dict, seed: int, steps: int = 6) -> None:
    """Fail unless ``optimizer`` follows ``torch.optim.<torch_name>`` step for step.

    Both start from the same unseen float64 parameters (shapes (3, 4) and (5,)) and
    receive the same unseen sequence of gradients.

    Args:
        optimizer: the student's optimiser, with ``step(params, grads)`` updating in place.
        torch_name: a class in ``torch.optim`` (``"SGD"``, ``"Adam"``, ...).
        torch_kwargs: its arguments, matching the student's hyper-parameters.
        seed: selects the unseen inputs.
    Raises:
        AssertionError: naming the first step and parameter that differ.
    """
    __tracebackhide__ = True
    import torch

    from da6401.grader.checks import assert_close, unseen_rng
    from da6401.student.checks import OPTIMIZER_BAND
    from da6401.student.objects import type_name

    rng = unseen_rng(seed)
    params = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    reference = getattr(torch.optim, torch_name)(tensors, **torch_kwargs)
    for step in range(1, steps + 1):
        grads = [rng.normal(size=p.shape) * 2.0 ** rng.integers(-3, 4) for p in params]
        optimizer.step(params, [g.copy() for g in grads])
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        reference.step()
        for i, (p, t) in enumerate(zip(params, tensors)):
            assert_close(p, t.detach().numpy(), tol=OPTIMIZER_BAND, name=f"{type_name(optimizer)}: params[{i}] after step {step}")
