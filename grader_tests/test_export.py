"""Does `nbgrader export` give A4 the better of its two notebooks, and every other assignment nbgrader's own sum?"""
from __future__ import annotations

import csv
import shutil
import subprocess

import pytest
from nbgrader.api import Gradebook

from conftest import BIN, REPO, course_env

# student -> {notebook: auto score}; a notebook left out of the dict was not done (scores nothing)
A4_SCORES = {"dcgan_only": {"dcgan": 40}, "vit_only": {"vit": 45}, "both_vit_better": {"dcgan": 20, "vit": 35},
             "both_dcgan_better": {"dcgan": 48, "vit": 10}}


def make_gradebook(path):
    """A gradebook with A1 (one notebook, 10 points) and A4 (dcgan and vit, 50 points each), graded."""
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.add_assignment("a1_mlp")
        gb.add_notebook("mlp_backprop", "a1_mlp")
        for cell in ("test_sigmoid", "test_softmax"):
            gb.add_grade_cell(cell, "mlp_backprop", "a1_mlp", max_score=5, cell_type="code")
        gb.add_assignment("a4_generative")
        for notebook in ("dcgan", "vit"):
            gb.add_notebook(notebook, "a4_generative")
            gb.add_grade_cell(f"test_{notebook}", notebook, "a4_generative", max_score=50, cell_type="code")
        for student, scores in {**A4_SCORES, "submitted_nothing": None}.items():
            gb.add_student(student)
            gb.add_submission("a1_mlp", student)
            gb.find_grade("test_sigmoid", "mlp_backprop", "a1_mlp", student).auto_score = 5
            gb.find_grade("test_softmax", "mlp_backprop", "a1_mlp", student).auto_score = 3
            if scores is not None:
                gb.add_submission("a4_generative", student)
                for notebook, points in scores.items():
                    gb.find_grade(f"test_{notebook}", notebook, "a4_generative", student).auto_score = points
        gb.db.commit()


def test_export_gives_a4_the_better_notebook_and_a1_the_sum(tmp_path):
    """Run through `nbgrader export` with the course's config: is A4 the best notebook (also for one notebook or none)?"""
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    make_gradebook(tmp_path / "gradebook.db")
    done = subprocess.run([str(BIN / "nbgrader"), "export", "--to", "grades.csv"], cwd=tmp_path, env=course_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(open(tmp_path / "grades.csv"))}
    expected_a4 = {"dcgan_only": 40, "vit_only": 45, "both_vit_better": 35, "both_dcgan_better": 48, "submitted_nothing": 0}
    for student, points in expected_a4.items():
        row = rows[("a4_generative", student)]
        assert (float(row["score"]), float(row["max_score"])) == (points, 50), (student, row)
        assert float(rows[("a1_mlp", student)]["score"]) == 8 and float(rows[("a1_mlp", student)]["max_score"]) == 10


@pytest.mark.slow
def test_export_of_the_autograded_a4_samples_counts_the_notebook_each_handed_in(autograded):
    """On the real gradebook of the autograded A4 samples (each hands in one notebook, nbgrader records both), is every
    student's A4 score that notebook's points, out of one notebook's maximum, not the two notebooks' sum?"""
    course, scores = autograded("a4_generative")
    done = subprocess.run([str(BIN / "nbgrader"), "export", "--to", "grades.csv"], cwd=course, env=course_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv")) if r["assignment"] == "a4_generative"}
    assert {"dcgan_reference", "vit_reference", "dcgan_untouched"} <= set(rows)
    for student, cells in scores.items():
        handed_in = sum(score or 0 for score, _ in cells.values())  # written answers await a TA: 0 so far
        out_of = sum(points for _, points in cells.values())
        assert (float(rows[student]["score"]), float(rows[student]["max_score"])) == (handed_in, out_of), student
