"""Checks of the experiment results a notebook saves (learning curves per run), for A2-A4.

Results are plain JSON, so a grader reads them without running anything:

    {"<group>": {"<run>": {"train_loss": [per epoch ...], "val_acc": [per epoch ...]}, ...}, ...}

Runs in one group are compared at an equal budget: the same number of epochs.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


def load_results(path: str | os.PathLike) -> dict:
    """Read saved experiment results.

    Raises:
        AssertionError: the file is missing or is not JSON, with what to do.
    """
    __tracebackhide__ = True
    from da6401.grader.context import submitted_file

    path = submitted_file(path)
    assert path.is_file(), (f"no experiment results at {path.name}: run the experiment cells, which save them, "
                            f"and submit {path.name} with the notebook")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AssertionError(f"{path.name} is not valid JSON ({e}); save it with json.dump") from None


def check_results(results: dict, groups: dict[str, list[str]], curves=("train_loss", "val_acc"),
                  min_best_acc: float = 0.0) -> None:
    """Fail unless every group holds every named run, each with finite per-epoch curves of one length.

    Args:
        results: the loaded results (see the module docstring).
        groups: {group: [run names it must hold]}.
        curves: the per-epoch lists each run must have; names ending in "acc" must lie in [0, 1].
        min_best_acc: the best final accuracy in each group must reach this (the runs really trained).
    """
    __tracebackhide__ = True
    assert isinstance(results, dict), f"results must be a dict of groups, not {type(results).__name__}"
    for group, names in groups.items():
        runs = results.get(group)
        assert isinstance(runs, dict), f"results has no group {group!r} (found: {sorted(results)})"
        missing = [n for n in names if n not in runs]
        assert not missing, f"results[{group!r}] lacks the runs {missing} (found: {sorted(runs)})"
        lengths = {}
        for name in names:
            for curve in curves:
                values = runs[name].get(curve) if isinstance(runs[name], dict) else None
                where = f"results[{group!r}][{name!r}][{curve!r}]"
                assert isinstance(values, list) and values, f"{where} must be a non-empty list, one value per epoch"
                assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values), (
                    f"{where} has values that are not finite numbers")
                if curve.endswith("acc"):
                    assert all(0 <= v <= 1 for v in values), f"{where} must be fractions in [0, 1]"
                lengths[(name, curve)] = len(values)
        assert len(set(lengths.values())) == 1, (
            f"the runs of {group!r} differ in length ({sorted(set(lengths.values()))} epochs): compare them at "
            "an equal budget")
        accs = [curve_values[-1] for n in names for c, curve_values in runs[n].items() if c.endswith("acc")]
        if accs:
            assert max(accs) >= min_best_acc, (
                f"the best final accuracy in {group!r} is {max(accs):.3f}; trained runs reach at least {min_best_acc}")
