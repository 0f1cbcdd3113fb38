"""Does a broken submission get a clear error without losing anyone's submission or grade?"""
from __future__ import annotations

import subprocess

import nbformat
import pytest

from conftest import BIN, course_env, make_course, nbgrader
from da6401.scores import cell_scores, deleted_test_cells, unscored
from da6401.submissions import assemble

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded_with_broken(tmp_path_factory, needs_data):
    """A course where `untouched` is graded beside a truncated notebook, a notebook with a test cell
    deleted, and a folder without the notebook."""
    course = make_course(tmp_path_factory.mktemp("broken"))
    nbgrader(course, "generate_assignment", "a1_mlp", "--force")
    assemble("a1_mlp", ["untouched"], course)
    release = (course / "release" / "a1_mlp" / "mlp_backprop.ipynb").read_bytes()
    corrupt = course / "submitted" / "truncated_notebook" / "a1_mlp" / "mlp_backprop.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(release[: len(release) // 2])
    deleted = nbformat.reads(release.decode(), as_version=4)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_sigmoid"]
    (course / "submitted" / "test_cell_deleted" / "a1_mlp").mkdir(parents=True)
    nbformat.write(deleted, course / "submitted" / "test_cell_deleted" / "a1_mlp" / "mlp_backprop.ipynb")
    missing = course / "submitted" / "notebook_missing" / "a1_mlp"
    missing.mkdir(parents=True)
    (missing / "my_notes.txt").write_text("I forgot to upload the notebook\n")
    done = subprocess.run([str(BIN / "nbgrader"), "autograde", "a1_mlp", "--force"], cwd=course,
                          env=course_env(), capture_output=True, text=True, timeout=1800)
    return course, done, release


def test_truncated_notebook_is_reported_and_kept(graded_with_broken):
    """Is a truncated notebook named in nbgrader's errors, and is the submitted file left as it was?"""
    course, done, release = graded_with_broken
    assert done.returncode != 0, "autograde should report the broken submission"
    assert "truncated_notebook" in done.stdout + done.stderr
    corrupt = course / "submitted" / "truncated_notebook" / "a1_mlp" / "mlp_backprop.ipynb"
    assert corrupt.read_bytes() == release[: len(release) // 2], "the student's file must never be altered"


def test_other_students_are_graded_despite_broken_submissions(graded_with_broken):
    """Does everyone else still get graded when one notebook is corrupt and one is missing?"""
    course, _, _ = graded_with_broken
    scores = cell_scores(course, "a1_mlp")
    assert "untouched" in scores and scores["untouched"]["test_sigmoid"] == (0, 2)


def test_score_report_names_the_submissions_autograde_could_not_score(graded_with_broken):
    """Does the score report name the submission without its notebook and the corrupt one, with why?"""
    course, _, _ = graded_with_broken
    problems = unscored(course, "a1_mlp", cell_scores(course, "a1_mlp"))
    assert set(problems) == {"notebook_missing", "truncated_notebook"}
    assert "no notebook" in problems["notebook_missing"] and "my_notes.txt" in problems["notebook_missing"]
    assert "autograde failed" in problems["truncated_notebook"]


def test_deleted_test_cell_is_flagged_not_passed(graded_with_broken):
    """Is a deleted test cell reported (nbgrader leaves it to a TA) rather than scored as passed?"""
    course, _, _ = graded_with_broken
    assert deleted_test_cells(course, "a1_mlp").get("test_cell_deleted") == ["test_sigmoid"]
    score, points = cell_scores(course, "a1_mlp")["test_cell_deleted"]["test_sigmoid"]
    assert score is None and points == 2
