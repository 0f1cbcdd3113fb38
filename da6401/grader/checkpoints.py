"""Checkpoints as the grader reads them: the submission's file, weights only, measured on the grader's side.

The student-side helpers (:mod:`da6401.student.checkpoints`) read and load a checkpoint; here the same happens
with the file confined to the submission and the tensors sent to the student's model in the kernel. The size of
a checkpoint is counted from the file, by the grader: a model class that under-reports its parameters, or a
checkpoint that smuggles a table of the test set in a buffer, is measured as it is.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from da6401.grader.context import submitted_file
from da6401.student import checkpoints as student
from da6401.student.checkpoints import CheckpointError, count_parameters

__all__ = ["CheckpointError", "assert_checkpoint_size", "assert_parameter_budget", "count_parameters",
           "load_into", "load_state_dict", "read_checkpoint"]


def read_checkpoint(path, extras: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`da6401.student.checkpoints.read_checkpoint` of the submission's file ``path``."""
    return student.read_checkpoint(submitted_file(path), extras)


def load_state_dict(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def load_into(model, path: str | os.PathLike, state: Mapping[str, torch.Tensor] | None = None,
              budget: int | None = None):
    """Load the submission's checkpoint ``path`` into ``model`` (a handle to the student's model), in eval mode;
    with a ``budget``, first fail unless the file holds no more numbers than such a model needs
    (:func:`assert_checkpoint_size`)."""
    __tracebackhide__ = True
    state = state if state is not None else load_state_dict(path)
    if budget is not None:
        assert_checkpoint_size(state, budget, name=str(path))
    return student.load_into(model, submitted_file(path), state)


def assert_parameter_budget(model, budget: int) -> None:
    __tracebackhide__ = True
    student.assert_parameter_budget(model, budget)


def checkpoint_allowance(budget: int) -> int:
    """How many numbers a checkpoint of a model within ``budget`` parameters may hold: the parameters, plus room
    for buffers (BatchNorm statistics: a few per channel, far under 5 % of the parameters of any model here)."""
    return int(budget * 1.05) + 10_000


def assert_checkpoint_size(state: Mapping[str, torch.Tensor], budget: int, name: str = "the checkpoint") -> int:
    """Fail unless the checkpoint holds at most :func:`checkpoint_allowance` numbers (parameters and buffers).

    Counted from the file: a table of the public test set hidden in a buffer (30.7 M numbers for CIFAR-10's
    images) does not fit beside a model of a million parameters.

    Returns:
        The count.
    """
    __tracebackhide__ = True
    n = sum(int(t.numel()) for t in state.values())
    allowed = checkpoint_allowance(budget)
    assert n <= allowed, (f"{name} holds {n:,} numbers (parameters and buffers); a model within the budget of "
                          f"{budget:,} parameters needs at most {allowed:,}")
    return n
