"""Helpers that work alike on the notebook's own objects and on the grader's handles to them.

In the student's kernel a check receives the notebook's objects; in the trusted grader it receives
:class:`~da6401.grader.channel.Remote` handles (objects stay in the kernel) and plain data. Checks written with
these helpers run unchanged in both places, which is how the grading layer's own tests exercise them fast.
"""
from __future__ import annotations

import importlib


def is_remote(obj) -> bool:
    """Is ``obj`` a grader's handle to an object in a student's kernel?"""
    return type(obj).__name__ == "Remote" and type(obj).__module__ == "da6401.grader.channel"


def type_name(obj) -> str:
    """The class name of ``obj`` (of the kernel's object, for a handle)."""
    return obj._type.rsplit(".", 1)[-1] if is_remote(obj) else type(obj).__name__


def is_instance(obj, cls: type | tuple[type, ...]) -> bool:
    """``isinstance(obj, cls)``, also for a handle (by the qualified names of its classes)."""
    classes = cls if isinstance(cls, tuple) else (cls,)
    if is_remote(obj):
        names = {f"{c.__module__}.{c.__qualname__}" for c in classes}
        return any(name in names for name in obj._mro)
    return isinstance(obj, classes)


def own_attribute(obj, name: str) -> bool:
    """Is ``name`` set on ``obj`` itself (for a class: defined in it, not inherited)?"""
    if is_remote(obj):
        return obj._channel.request({"op": "own_attr", "obj": obj, "name": name}) is True
    return name in vars(obj)


class _Local:
    """The kernel of local objects: this process."""

    @staticmethod
    def module(name: str):
        return importlib.import_module(name)


def kernel_of(obj):
    """Where ``obj`` lives, to build objects beside it: ``kernel_of(model).module("torch.optim").SGD(...)``
    makes an optimiser in the student's kernel over the kernel's parameters (the grader's own would update copies)."""
    return obj._channel if is_remote(obj) else _Local


def value_and_grad(fn, *args, wrt=None, upstream=None):
    """``fn(*args)`` and the gradients of ``sum(upstream * fn(*args))`` w.r.t. the tensors ``args[i]``, i in
    ``wrt`` (default all), computed where ``fn`` lives (autograd does not cross into the grader).

    Returns:
        (value, grads): the value (a tensor, detached) and one gradient per i in ``wrt`` (None where it is none).
    """
    from da6401.student.agent import value_and_grad as local

    if is_remote(fn):
        return fn._channel.request({"op": "grad", "obj": fn, "args": list(args),
                                    "wrt": None if wrt is None else list(wrt), "upstream": upstream})
    return local(fn, args, wrt, upstream)


def run_beside(obj, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run where ``obj`` lives: in the student's kernel for a handle (``fn`` travels there
    by value; what it returns comes back as data), here otherwise. For work that must happen next to the
    student's objects, such as a few training steps with autograd; the verdict is still computed by the caller."""
    if is_remote(obj):
        return obj._channel.request({"op": "call", "obj": fn, "args": list(args), "kwargs": kwargs})
    return fn(*args, **kwargs)
