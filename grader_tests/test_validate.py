"""Does `nbgrader validate`, the students' last check, pass a correct notebook and flag an unfinished one?"""
from __future__ import annotations

import subprocess

import pytest

from conftest import BIN, course_env, make_course
from da6401.submissions import assemble

pytestmark = pytest.mark.slow


def _validate(course, notebook) -> str:
    done = subprocess.run([str(BIN / "nbgrader"), "validate", str(notebook)], cwd=course, env=course_env(),
                          capture_output=True, text=True, timeout=1800)
    return done.stdout + done.stderr


@pytest.mark.parametrize("assignment,notebook,reference,test_cells", [
    ("a1_mlp", "mlp_backprop.ipynb", "reference", 18),
    ("a2_cnn", "cnn_cifar10.ipynb", "reference", 8 + 2),  # 8 test cells and 2 written answers still "YOUR ANSWER HERE"
    ("a3_seq2seq", "seq2seq_translation.ipynb", "reference", 8 + 2),
    ("a4_generative", "dcgan.ipynb", "dcgan_reference", 7 + 2),
    ("a4_generative", "vit.ipynb", "vit_reference", 7 + 2),
])
def test_validate_passes_the_reference_and_fails_every_test_cell_of_the_release(tmp_path, needs_data, assignment,
                                                                                notebook, reference, test_cells):
    """Does validate say Success for the reference (with its files) and list every test cell of the untouched release
    (and every written answer left unanswered)?"""
    course = make_course(tmp_path / "course")
    (reference,) = assemble(assignment, [reference], course)
    out = _validate(course, reference / notebook)
    assert "Success! Your notebook passes all the tests." in out, out[-3000:]
    out = _validate(course, course / "release" / assignment / notebook)
    assert f"VALIDATION FAILED ON {test_cells} CELL(S)" in out, out[-3000:]
    assert "NotImplementedError" in out
