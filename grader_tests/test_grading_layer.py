"""Does the grading-helper layer pass what is right, fail what is wrong, and say why?"""
from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbgrader import utils

from da6401.student import assert_close, assert_shape, numerical_gradient, rel_error, report_gradient_check
from da6401.grader.oracles import check_optimizer_against_torch, torch_grads
from da6401.nbgrader_ext import HideHiddenTests


def test_rel_error_is_zero_for_equal_and_inf_for_nan():
    """Is rel_error 0 for equal arrays, 1 for opposite signs, and inf when a NaN sneaks in?"""
    x = np.array([1.0, -2.0, 3.0])
    assert rel_error(x, x) == 0.0
    assert rel_error(x, -x) == pytest.approx(1.0)
    assert rel_error(x, np.array([1.0, np.nan, 3.0])) == float("inf")


def test_assert_close_message_names_the_value_error_and_band():
    """Does a failed comparison say what was compared, by how much it was off, and the band?"""
    with pytest.raises(AssertionError, match=r"dW: relative error 1\.00e\+00 is outside the band <= 1e-07"):
        assert_close(np.ones(3), np.zeros(3), name="dW")
    with pytest.raises(AssertionError, match=r"dW: expected shape \(3,\), got \(2,\)"):
        assert_close(np.ones(2), np.zeros(3), name="dW")
    with pytest.raises(AssertionError, match="got None"):
        assert_close(None, np.zeros(3), name="dW")
    assert_close(np.ones(3) + 1e-12, np.ones(3), name="dW")


def test_assert_shape_rejects_non_arrays_and_wrong_shapes():
    """Does assert_shape fail on a list or a transposed array?"""
    with pytest.raises(AssertionError, match="expected an array"):
        assert_shape([1, 2], (2,))
    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        assert_shape(np.zeros((3, 2)), (2, 3))


def test_numerical_gradient_matches_analytic_and_restores_input():
    """Does the central difference of sum(x**3) give 3x**2, leaving x unchanged?"""
    x = np.random.default_rng(0).normal(size=(3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda v: float(np.sum(v ** 3)), x)
    assert rel_error(grad, 3 * before ** 2) < 1e-6  # the error is exactly h**2 = 1e-10 per entry
    assert np.array_equal(x, before)


def test_gradient_check_prints_error_and_band_and_fails_a_wrong_gradient(capsys):
    """Does the gradient check print its verdict, pass a right gradient and fail a wrong one?"""
    x = np.random.default_rng(1).normal(size=5)
    numeric = numerical_gradient(lambda v: float(np.sum(np.tanh(v))), x)
    report_gradient_check(1 - np.tanh(x) ** 2, numeric, name="dtanh")
    assert "must be <= 1e-06" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        report_gradient_check(np.tanh(x), numeric, name="dtanh")
    assert "WRONG" in capsys.readouterr().out


def test_torch_grads_gives_value_and_input_gradients():
    """Does the torch oracle return f(x) and the upstream-weighted gradient for each input?"""
    import torch

    a, b = np.array([[1.0, 2.0]]), np.array([[3.0], [4.0]])
    out, (da, db) = torch_grads(lambda x, y: x @ y, [a, b], upstream=np.array([[2.0]]))
    assert out.tolist() == [[11.0]]
    assert da.tolist() == [[6.0, 8.0]] and db.tolist() == [[2.0], [4.0]]
    assert isinstance(torch.__version__, str)


class _Sgd:
    def __init__(self, lr, bug=False):
        self.lr, self.bug = lr, bug

    def step(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.lr * (g if not self.bug else np.sign(g))


def test_optimizer_oracle_accepts_faithful_and_rejects_wrong_update():
    """Does the torch.optim comparison pass a faithful SGD and name the step where a wrong one departs?"""
    check_optimizer_against_torch(_Sgd(0.1), "SGD", dict(lr=0.1), seed=0)
    with pytest.raises(AssertionError, match="params\\[0\\] after step 1"):
        check_optimizer_against_torch(_Sgd(0.1, bug=True), "SGD", dict(lr=0.1), seed=0)


def _graded(source: str, grade_id: str, points: int = 1):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": grade_id,
                                 "points": points, "schema_version": 3}
    return cell


@pytest.fixture(scope="module")
def executed_cells():
    """A notebook of %%tests cells run in a real kernel, as nbgrader runs them."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext da6401.student\nimport numpy as np, sys, warnings\ntest_images = [1, 2]"),
        _graded("%%tests\ndef test_passes():\n    warnings.warn('noisy')\n    print('to stderr', file=sys.stderr)\n"
                "    assert 1 + 1 == 2\nprint('cell body on stderr', file=sys.stderr)", "passing"),
        _graded("%%tests\nx = 3\ndef test_fails():\n    assert x + 1 == 5\ndef test_ok():\n    assert True", "failing"),
        _graded("%%tests\ndef test_left_behind():\n    assert False\nraise RuntimeError('broken cell')", "broken"),
        _graded("%%tests\ndef test_only_this_one():\n    assert True", "after_broken"),
        _graded("%%tests\nvalue = 1", "no_tests"),
        _graded("%%tests\ndef test_student_data_named_test_survives():\n    assert test_images == [1, 2]", "data_kept"),
        _graded("%%tests\ntest_images = None\ndef test_sees_its_own_binding():\n    assert test_images is None", "rebinds"),
        nbformat.v4.new_code_cell("print('after:', test_images)"),
    ]
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3").execute()
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells[1:] if "nbgrader" in c.metadata}
    cells["last"] = nb.cells[-1]
    return cells


def _text(cell) -> str:
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)


def test_tests_magic_passes_a_passing_cell_despite_stderr(executed_cells):
    """Does a passing %%tests cell score full marks even when it writes to stderr?"""
    cell = executed_cells["passing"]
    assert utils.determine_grade(cell) == (1, 1), _text(cell)
    assert "PASS  test_passes" in _text(cell) and "1 of 1 tests passed" in _text(cell)


def test_tests_magic_fails_the_cell_and_shows_the_values(executed_cells):
    """Does a failing assert score 0 and show the compared values in a pytest report?"""
    cell = executed_cells["failing"]
    assert utils.determine_grade(cell) == (0, 1)
    assert "FAIL  test_fails" in _text(cell) and "assert (3 + 1) == 5" in _text(cell)
    assert "1 of 2 tests passed" in _text(cell) and "test_fails: assert (3 + 1) == 5" in _text(cell)


def test_one_broken_cell_does_not_cost_the_next_cell_its_points(executed_cells):
    """Is a test left behind by a broken cell forgotten before the next cell runs?"""
    assert utils.determine_grade(executed_cells["broken"]) == (0, 1)
    after = executed_cells["after_broken"]
    assert utils.determine_grade(after) == (1, 1), _text(after)
    assert "1 of 1 tests passed" in _text(after) and "test_left_behind" not in _text(after)


def test_a_test_cell_without_tests_fails(executed_cells):
    """Does a %%tests cell that defines no test score 0 instead of passing vacuously?"""
    cell = executed_cells["no_tests"]
    assert utils.determine_grade(cell) == (0, 1)
    assert "defines no test" in _text(cell)


def test_test_cells_keep_student_variables_named_test(executed_cells):
    """Do test cells forget only earlier test functions, not data such as `test_images`?"""
    cell = executed_cells["data_kept"]
    assert utils.determine_grade(cell) == (1, 1), _text(cell)


def test_a_test_cell_cannot_change_the_notebooks_variables(executed_cells):
    """Does a name a test cell binds stay in the test cell, leaving the notebook's variable as it was?"""
    assert utils.determine_grade(executed_cells["rebinds"]) == (1, 1), _text(executed_cells["rebinds"])
    assert "after: [1, 2]" in _text(executed_cells["last"])


def test_hide_hidden_tests_replaces_the_region_and_keeps_the_report():
    """Does feedback show a placeholder instead of hidden tests, keep visible tests and outputs?"""
    cell = _graded("%%tests\ndef test_visible():\n    pass\n### BEGIN HIDDEN TESTS\ndef test_secret():\n"
                   "    assert secret == 42\n### END HIDDEN TESTS", "t")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="FAILED test_secret\n"),
                    nbformat.v4.new_output("error", ename="TestsFailed", evalue="1 of 2 tests failed",
                                           traceback=["run_cell_magic('tests', '', 'def test_secret():\\n"
                                                      "    assert secret == 42')", "TestsFailed: 1 of 2 tests failed"])]
    HideHiddenTests().preprocess(nbformat.v4.new_notebook(cells=[cell]), {})
    assert "secret == 42" not in cell.source and "def test_visible" in cell.source
    assert "(2 lines of hidden tests" in cell.source
    assert cell.outputs[0].text == "FAILED test_secret\n"
    assert cell.outputs[1].traceback == ["TestsFailed: 1 of 2 tests failed"], "the traceback quotes the hidden code"


def test_hide_hidden_tests_hides_an_unterminated_region():
    """Does a region missing its END marker stay hidden rather than leak?"""
    cell = _graded("a = 1\n### BEGIN HIDDEN TESTS\nsecret = 42", "t")
    HideHiddenTests().preprocess(nbformat.v4.new_notebook(cells=[cell]), {})
    assert "secret" not in cell.source and cell.source.startswith("a = 1")


def test_sanitize_outputs_runs_when_listed_and_cleans_outputs_and_written_answers():
    """Is SanitizeOutputs on when autograde lists it (nbconvert's preprocessors are off by default, which once left
    it doing nothing), and does it drop scripts from outputs and from a Markdown answer while keeping the text, and
    image sizes that would add attributes to the <img> tag nbconvert writes them into unquoted?"""
    import nbformat

    from da6401.nbgrader_ext import SanitizeOutputs

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("My answer. <script>steal()</script> <img src=x onerror=\"steal()\"> "
                                              "[click](javascript:steal()) [ref]\n\n[ref]: JavaScript:steal()"),
                nbformat.v4.new_markdown_cell("No HTML, $x < y$ stays as written."),
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data={
                    "text/html": "<b>kept</b><script>steal()</script>", "application/javascript": "steal()",
                    "text/plain": "kept"}), nbformat.v4.new_output("display_data", data={
                        "image/png": "iVBORw0KGgo=", "image/jpeg": 'x"><script>steal()</script>'},
                        metadata={"image/png": {"width": "1 onerror=steal()", "height": 20}})])]
    out, _ = SanitizeOutputs()(nb, {})
    answer, untouched, code = out.cells
    image = code.outputs[1]
    assert image["metadata"] == {"image/png": {"height": 20}}, "a width that is not a number must go (it is written unquoted)"
    assert set(image["data"]) == {"image/png"}, "image data that is not base64 must go"
    assert "My answer." in answer.source and not re.search(r"<script|<[^>]*\son\w+\s*=", answer.source)
    assert not re.search(r"(?i)(\]\(|\]:\s*)javascript:", answer.source), "a Markdown link to a script URL must go"
    assert untouched.source == "No HTML, $x < y$ stays as written."
    data = code.outputs[0]["data"]
    assert "application/javascript" not in data and "<script" not in data["text/html"] and "<b>kept</b>" in data["text/html"]
