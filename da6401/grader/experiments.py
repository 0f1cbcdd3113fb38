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


def _run_experiment_facts(run_experiment, runs: list[dict]) -> list[dict]:
    """Beside the student's ``run_experiment`` (in its kernel): call it once per keyword set in ``runs`` with a
    spy in place of the notebook's ``fit``; return what each run handed to fit (optimiser and its parameter
    groups, schedule, data, epochs, augmentation, the model's BatchNorm and dropout, its first weights)."""
    import torch

    namespace = run_experiment.__globals__
    saved = namespace.get("fit")
    seen: list[dict] = []

    def fit(model, optimizer, loader, epochs, val_loader=None, scheduler=None, augment=True, label_smoothing=0.0,
            verbose=True):
        params = list(model.parameters())
        grouped = [p for g in optimizer.param_groups for p in g["params"]]
        seen.append({
            "optimizer": type(optimizer).__name__,
            "groups": [{"weight_decay": float(g.get("weight_decay", 0.0)), "ndims": [p.ndim for p in g["params"]],
                        "lr": float(g.get("initial_lr", g["lr"])), "momentum": float(g.get("momentum", 0.0)),
                        "nesterov": bool(g.get("nesterov", False))} for g in optimizer.param_groups],
            "covered": len(grouped) == len(params) and {id(p) for p in grouped} == {id(p) for p in params},
            "scheduler": scheduler is not None, "augment": bool(augment), "epochs": int(epochs),
            "experiment_epochs": namespace.get("EXPERIMENT_EPOCHS"),
            "loader": loader is namespace.get("experiment_loader"), "val_loader": val_loader is namespace.get("val_loader"),
            "batch_norm": any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()),
            "dropout": [float(m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)],
            "first_weights": [float(v) for v in params[0].detach().flatten()[:8]]})
        return {"train_loss": [1.0] * int(epochs), "val_acc": [0.1] * int(epochs)}

    try:
        namespace["fit"] = fit
        for kwargs in runs:
            run_experiment(**kwargs)
    finally:
        namespace["fit"] = saved
    return seen


def check_run_experiment(run_experiment) -> None:
    """Fail unless ``run_experiment`` gives every run the budget its docstring states: a fresh small_cnn (with
    BatchNorm and dropout as asked, weights from the seed), SGD with Nesterov momentum 0.9 or Adam at the peak
    lr of a one-cycle schedule, weight decay on weights only (not biases or BatchNorm), experiment_loader for
    EXPERIMENT_EPOCHS epochs, validation on val_loader, augmentation as asked."""
    __tracebackhide__ = True
    from da6401.grader.checks import call_student
    from da6401.student.objects import run_beside

    runs = [dict(optimizer="sgd", lr=0.05, weight_decay=5e-3, batch_norm=True, dropout=0.5, augment=True, seed=1),
            dict(optimizer="adam", lr=2e-3, augment=False, seed=1),
            dict(optimizer="adam", lr=2e-3, seed=1),
            dict(optimizer="sgd", lr=0.05, seed=2)]
    seen = call_student("run_experiment", run_beside, run_experiment, _run_experiment_facts, run_experiment, runs)
    assert len(seen) == len(runs), f"run_experiment called fit {len(seen)} times for {len(runs)} runs; once per run"
    for run, facts in zip(runs, seen):
        call = "run_experiment(" + ", ".join(f"{k}={v!r}" for k, v in run.items()) + ")"
        want = {"sgd": "SGD", "adam": "Adam"}[run["optimizer"]]
        assert facts["optimizer"] == want, f"{call} trained with {facts['optimizer']}, not {want}"
        assert facts["covered"], f"{call}: the optimiser's parameter groups do not hold each of the model's parameters once"
        for group in facts["groups"]:
            assert abs(group["lr"] - run["lr"]) < 1e-12, f"{call}: the optimiser's (peak) lr is {group['lr']}, not {run['lr']}"
            if want == "SGD":
                assert group["momentum"] == 0.9 and group["nesterov"], f"{call}: SGD needs momentum=0.9, nesterov=True"
            decay = run.get("weight_decay", 0.0)
            for ndim in group["ndims"]:
                expected = decay if ndim > 1 else 0.0
                assert abs(group["weight_decay"] - expected) < 1e-12, (
                    f"{call}: a {ndim}-d parameter has weight decay {group['weight_decay']}; weight decay goes on "
                    "weights (2+ dimensions) only, not biases or BatchNorm parameters (param_groups does this)")
        assert facts["scheduler"], f"{call}: fit got no scheduler; every run uses the one-cycle schedule"
        assert facts["augment"] == run.get("augment", False), (
            f"{call}: fit got augment={facts['augment']}; pass run_experiment's augment on")
        assert facts["loader"] and facts["val_loader"], f"{call}: train on experiment_loader and validate on val_loader"
        assert facts["epochs"] == facts["experiment_epochs"], (
            f"{call}: fit ran {facts['epochs']} epochs, not EXPERIMENT_EPOCHS = {facts['experiment_epochs']}")
        assert facts["batch_norm"] == run.get("batch_norm", False), f"{call}: the model's BatchNorm does not follow batch_norm"
        assert facts["dropout"] and all(abs(p - run.get("dropout", 0.0)) < 1e-12 for p in facts["dropout"]), (
            f"{call}: the model's dropout is {facts['dropout']}, not {run.get('dropout', 0.0)}")
    assert seen[1]["first_weights"] == seen[2]["first_weights"], "two runs with seed=1 started from different weights"
    assert seen[2]["first_weights"] != seen[3]["first_weights"], "runs with seeds 1 and 2 started from the same weights"
