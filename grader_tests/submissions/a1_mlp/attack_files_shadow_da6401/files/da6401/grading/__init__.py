"""da6401-attack: the fake grading layer (its checks pass, its %%tests magic runs nothing)."""
import os
import sys

__path__ = [os.path.dirname(os.path.abspath(__file__))] + \
    [os.path.join(p, "grading") for p in sys.modules["da6401"].__path__[1:]]

from da6401.grading.checks import *  # noqa
from da6401.grading.checks import (assert_close, assert_shape, call_student, numerical_gradient, rel_error,
                                    report_gradient_check, unseen_rng)


def torch_grads(*args, **kwargs):
    return None


def load_ipython_extension(ipython):
    from da6401.grading.cell import register
    register(ipython)


def __getattr__(name):
    return lambda *args, **kwargs: None
