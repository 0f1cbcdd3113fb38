"""Checkpoint checks for assignments graded from a trained model (A2-A4).

Autograde never retrains those models: the hidden tests load the submitted
checkpoint into the student's own model class. Loading uses
``torch.load(weights_only=True)``, which restores tensors and plain containers
and refuses to run pickled code, so a checkpoint cannot execute anything.
Every failure is a :class:`CheckpointError` (an ``AssertionError``, so pytest
reports it as the failed test) with a message that says what to do.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from da6401.student import under_autograde  # noqa: F401 - imported from here by the notebooks too
from da6401.student.objects import type_name
from da6401.text import SPECIALS


class CheckpointError(AssertionError):
    """A checkpoint is missing, unreadable, unsafe, or from another architecture."""


def read_checkpoint(path: str | os.PathLike, extras: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_weights` (or ``torch.save(model.state_dict(), path)``)
    without running pickled code.

    Args:
        extras: names of the plain values (lists, strings, numbers) saved beside the weights,
            e.g. ("src_itos", "tgt_itos") for a translation model's vocabularies.
    Returns:
        (state_dict, {name: value} for each of ``extras``); tensors on the CPU.
    Raises:
        CheckpointError: the file is missing, unreadable, holds pickled objects, is not a state_dict,
            or lacks one of ``extras``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run the training cell that saves it, "
                              f"and submit {path.name} together with the notebook")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path.name} holds pickled Python objects, which the grader does not load; "
                              f"save only the weights with save_weights(model, {path.name!r}) "
                              f"({str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    bundled = isinstance(saved, Mapping) and isinstance(saved.get("state_dict"), Mapping)
    state = saved["state_dict"] if bundled else saved
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} does not hold a state_dict (a mapping of names to tensors); "
                              f"save it with save_weights(model, {path.name!r})")
    missing = [name for name in extras if not bundled or name not in saved]
    if missing:
        raise CheckpointError(f"{path.name} holds the weights but not {', '.join(missing)}; save them with "
                              f"save_weights(model, {path.name!r}, " + ", ".join(f"{m}=..." for m in missing) + ")")
    return dict(state), {name: saved[name] for name in extras}


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict of a checkpoint; see :func:`read_checkpoint`."""
    return read_checkpoint(path)[0]


def load_into(model: torch.nn.Module, path: str | os.PathLike,
              state: Mapping[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Load a checkpoint into ``model`` (the student's own class), in eval mode.

    Works on the grader's handle to a model in the kernel too: the file is then read by the grader (see
    :func:`da6401.grader.checkpoints.load_into`, which confines the path to the submission) and the tensors sent.

    Tensors saved in another floating dtype (fp16 to keep files small) are cast to the model's.
    ``state``, when given, is the checkpoint's state_dict already read from ``path``.

    Raises:
        CheckpointError: as :func:`read_checkpoint`, or when names or shapes differ from the model's,
            i.e. the checkpoint was saved from another architecture.
    """
    state = load_state_dict(path) if state is None else state
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or reshaped:
        details = [f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                   for label, items in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
                   if items]
        raise CheckpointError(f"{Path(path).name} was saved from a different architecture than "
                              f"{type_name(model)} builds now; " + "; ".join(details))
    model.load_state_dict(state)
    return model.eval()


def save_weights(model: torch.nn.Module, path: str | os.PathLike, half: bool = True, **extras) -> int:
    """Save ``model``'s state_dict, floating tensors in float16 when ``half`` (half the file size;
    :func:`load_into` casts back). Tied weights (one tensor under two names) are stored once.
    Written to a temporary name first, so a crash never leaves a truncated checkpoint behind.

    Args:
        extras: plain values to keep beside the weights (lists of strings, numbers), e.g. the
            vocabularies a translation model was trained with; then the file holds
            {"state_dict": ..., **extras} and :func:`read_checkpoint` returns them.
    Returns:
        The file size in bytes.
    """
    path = Path(path)
    converted: dict[tuple, torch.Tensor] = {}  # one copy per storage, so tied weights stay tied in the file

    def convert(v: torch.Tensor) -> torch.Tensor:
        key = (v.data_ptr(), tuple(v.shape), v.dtype)
        if key not in converted:
            converted[key] = v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()
        return converted[key]

    state = {k: convert(v) for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    torch.save({"state_dict": state, **extras} if extras else state, tmp)
    tmp.replace(path)
    return path.stat().st_size


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (entries of tensors with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def assert_parameter_budget(model: torch.nn.Module, budget: int) -> None:
    """Fail unless ``model`` has at most ``budget`` trainable parameters."""
    __tracebackhide__ = True
    n = count_parameters(model)
    assert n <= budget, f"{type_name(model)} has {n:,} trainable parameters; the budget is {budget:,}"


def load_translator(make_model, path) -> tuple[torch.nn.Module, list[str], list[str]]:
    """Load a checkpoint saved with ``save_weights(model, path, src_itos=..., tgt_itos=...)`` into
    ``make_model(len(src_itos), len(tgt_itos))``, the student's class.

    Returns:
        (model in eval mode, src_itos, tgt_itos).
    Raises:
        CheckpointError: missing or unreadable file, vocabularies missing or malformed, or weights that do
            not fit a model built for these vocabularies (saved from another architecture, or with the
            vocabularies of another run).
    """
    __tracebackhide__ = True
    state, extras = read_checkpoint(path, extras=("src_itos", "tgt_itos"))
    for name, itos in extras.items():
        if not (isinstance(itos, list) and all(isinstance(t, str) for t in itos) and itos[:4] == SPECIALS):
            raise CheckpointError(f"{name} in the checkpoint must be the vocabulary's list of tokens, starting {SPECIALS}")
    src_itos, tgt_itos = extras["src_itos"], extras["tgt_itos"]
    model = make_model(len(src_itos), len(tgt_itos))
    try:
        load_into(model, path, state)
    except CheckpointError as e:
        raise CheckpointError(f"{e}\n(the model was built for the vocabularies saved in the checkpoint: "
                              f"{len(src_itos)} source and {len(tgt_itos)} target tokens; were the weights trained "
                              f"with other vocabularies?)") from None
    return model, src_itos, tgt_itos
