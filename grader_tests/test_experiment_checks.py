"""Do the experiment-result checks accept complete results and name what an incomplete file lacks?"""
from __future__ import annotations

import copy
import json

import pytest

from da6401.grader.experiments import check_results, load_results

GROUPS = {"optimizers": ["sgd", "adam"], "regularisation": ["none", "dropout"]}


def run(acc: float, epochs: int = 3) -> dict:
    return {"train_loss": [2.0 - 0.3 * i for i in range(epochs)], "val_acc": [acc] * epochs}


def complete() -> dict:
    return {"optimizers": {"sgd": run(0.6), "adam": run(0.55)},
            "regularisation": {"none": run(0.5), "dropout": run(0.52), "extra": run(0.1, epochs=9)}}


def test_complete_results_pass_and_extra_runs_are_allowed():
    """Do results with every run, at an equal budget per group, pass (an extra run does no harm)?"""
    check_results(complete(), GROUPS, min_best_acc=0.5)


def broken(change) -> dict:
    results = copy.deepcopy(complete())
    change(results)
    return results


@pytest.mark.parametrize("results,message", [
    (broken(lambda r: r.pop("optimizers")), "no group 'optimizers'"),
    (broken(lambda r: r["regularisation"].pop("dropout")), r"lacks the runs \['dropout'\]"),
    (broken(lambda r: r["optimizers"]["adam"]["val_acc"].append(0.6)), "differ in length"),
    (broken(lambda r: r["optimizers"]["adam"].update(val_acc=[0.1, float("nan"), 0.2])), "not finite numbers"),
    (broken(lambda r: r["optimizers"]["sgd"].update(val_acc=[55.0, 60.0, 61.0])), r"fractions in \[0, 1\]"),
    (broken(lambda r: r["optimizers"]["sgd"].update(train_loss=[])), "must be a non-empty list"),
])
def test_incomplete_results_are_named(results, message):
    """Is each kind of incomplete or malformed result caught with where it is?"""
    with pytest.raises(AssertionError, match=message):
        check_results(results, GROUPS)


def test_untrained_runs_fail_the_accuracy_floor():
    """Are results whose best run is at chance level refused when a floor is set?"""
    with pytest.raises(AssertionError, match="best final accuracy in 'regularisation' is 0.520"):
        check_results(complete(), GROUPS, min_best_acc=0.6)


def test_loading_says_what_is_wrong_with_the_file(tmp_path):
    """Does loading name a missing file and a file that is not JSON, and read a good one?"""
    with pytest.raises(AssertionError, match="no experiment results at experiments.json"):
        load_results(tmp_path / "experiments.json")
    (tmp_path / "experiments.json").write_text('{"optimizers": ')
    with pytest.raises(AssertionError, match="not valid JSON"):
        load_results(tmp_path / "experiments.json")
    (tmp_path / "experiments.json").write_text(json.dumps(complete()))
    assert load_results(tmp_path / "experiments.json") == complete()
