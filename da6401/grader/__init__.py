"""What only the trusted grader runs: the hidden tests' checks, oracles and judges, and the channel to the kernel.

None of this is installed for students or visible in the sandbox. Test cells run here under autograde
(:mod:`da6401.grader.cell`); the student's code stays in its kernel and is reached through
:mod:`da6401.grader.channel`. Hidden tests import from here::

    from da6401.grader import assert_close, torch_grads, unseen_rng
    from da6401.grader.cifar import assert_test_accuracy

Functions and classes of this package that a check sends into the kernel (a spy model, a scripted decoder, a
training step run beside the student's model) travel by value: the kernel cannot import this package.
(cloudpickle then also pickles the ``torch`` submodules such code names as attributes: an attribute called
``classes`` or ``ops`` makes it try ``torch.classes`` and fail, so such code avoids those names.)
"""
import sys

import cloudpickle

from da6401.grader.checks import assert_close, assert_shape, call_student, numerical_gradient, rel_error, \
    report_gradient_check, unseen_rng
from da6401.grader.oracles import torch_grads

cloudpickle.register_pickle_by_value(sys.modules[__name__])

__all__ = ["assert_close", "assert_shape", "call_student", "numerical_gradient", "rel_error",
           "report_gradient_check", "torch_grads", "unseen_rng"]
