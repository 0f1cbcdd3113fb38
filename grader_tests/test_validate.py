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


def test_validate_passes_the_reference_and_fails_every_test_cell_of_the_release(tmp_path, needs_data):
    """Does validate say Success for the reference and list all 18 test cells of the untouched release?"""
    course = make_course(tmp_path / "course")
    (reference,) = assemble("a1_mlp", ["reference"], course)
    out = _validate(course, reference / "mlp_backprop.ipynb")
    assert "Success! Your notebook passes all the tests." in out, out[-3000:]
    out = _validate(course, course / "release" / "a1_mlp" / "mlp_backprop.ipynb")
    assert "VALIDATION FAILED ON 18 CELL(S)" in out, out[-3000:]
    assert "NotImplementedError" in out
