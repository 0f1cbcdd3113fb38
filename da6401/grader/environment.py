"""The names a test cell sees in the grader, before the notebook's own.

Every library and helper a test cell uses is the grader's (trusted) copy, never the kernel's: ``np``, ``torch``,
``assert_close`` and the others below, constants such as ``PARAM_BUDGET`` (a notebook that sets its own
``PARAM_BUDGET = 10**9`` changes nothing), and ``notebook``, the notebook's namespace as a mapping. Any other
name a test uses is the notebook's: its functions and objects as handles, its data as copies. Files a test opens
(``load_into(Net(), "cnn_cifar10.pt")``) are the submission's, read by the grader, confined to its folder
(:mod:`da6401.grader.context`).
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from da6401.grader.channel import Channel
from da6401.testcell import points
from da6401.text import EOS, PAD, SOS, SPECIALS, UNK

# Per notebook (by name), constants its tests read; the notebook states the same values to students.
CONSTANTS = {
    "cnn_cifar10": {"PARAM_BUDGET": 1_000_000, "CHECKPOINT": "cnn_cifar10.pt"},
    "seq2seq_translation": {"CHECKPOINT": "seq2seq_multi30k.pt"},
    "dcgan": {"PARAM_BUDGET": 1_000_000, "CHECKPOINT": "dcgan_generator.pt"},
    "vit": {"PARAM_BUDGET": 1_000_000, "CHECKPOINT": "vit_cifar10.pt"},
    "mlp_backprop": {"CHECKPOINT": "mlp_mnist.npz"},
}


class NotebookNamespace:
    """The notebook's global namespace, from the grader: ``notebook["Block"]``, ``notebook["patchify"] = f``."""

    def __init__(self, channel: Channel):
        self._channel = channel

    def __getitem__(self, name: str):
        try:
            return self._channel.get(name)
        except NameError:
            raise KeyError(name) from None

    def __setitem__(self, name: str, value) -> None:
        self._channel.request({"op": "set", "name": name, "value": value})

    def __delitem__(self, name: str) -> None:
        self._channel.request({"op": "delete", "name": name})

    def __contains__(self, name: str) -> bool:
        return self._channel.request({"op": "has", "name": name}) is True

    def get(self, name: str, default=None):
        return self[name] if name in self else default

    def update(self, values: dict) -> None:
        for name, value in values.items():
            self[name] = value


def environment(notebook: str, channel: Channel) -> dict:
    """The trusted names of the test cells of ``notebook`` (its file name without .ipynb)."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset, TensorDataset

    from da6401.grader import checkpoints, seq2seq, vit
    from da6401.student import checks

    names = {
        "np": np, "torch": torch, "nn": nn, "F": F, "math": math, "Counter": Counter, "Path": Path,
        "DataLoader": DataLoader, "TensorDataset": TensorDataset, "Subset": Subset,
        "assert_close": checks.assert_close, "assert_shape": checks.assert_shape, "rel_error": checks.rel_error,
        "numerical_gradient": checks.numerical_gradient, "report_gradient_check": checks.report_gradient_check,
        "count_parameters": checkpoints.count_parameters, "CheckpointError": checkpoints.CheckpointError,
        "load_into": checkpoints.load_into, "load_translator": seq2seq.load_translator,
        "contract_parts": vit.contract_parts,
        "PAD": PAD, "SOS": SOS, "EOS": EOS, "UNK": UNK, "SPECIALS": list(SPECIALS),
        "points": points, "notebook": NotebookNamespace(channel),
    }
    names.update(CONSTANTS.get(notebook, {}))
    return names
