"""Is release/ what students should get: current, and free of solutions, hidden tests and instructor files?"""
from __future__ import annotations

import fnmatch
import json
import re

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from conftest import REPO, make_course, nbgrader

ASSIGNMENTS = sorted({p.parent.name for p in (REPO / "source").glob("*/*.ipynb")})  # A4 has two notebooks
MARKERS = re.compile(r"BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|END HIDDEN TESTS")
STUDENT_FILE_TYPES = {".ipynb", ".md", ".png", ".jpg", ".svg", ".txt", ".csv"}
STUDENT_FILES = {"nbgrader_config.py"}  # sets the cell timeout for a student's own `nbgrader validate`


def _solution_lines(source_nb) -> set[str]:
    """Non-trivial lines inside solution and hidden-test regions of a source notebook."""
    lines, inside = set(), False
    for cell in source_nb.cells:
        for line in cell.source.splitlines():
            if MARKERS.search(line):
                inside = "BEGIN" in line
            elif inside and len(line.strip()) > 12:
                lines.add(line.strip())
    return lines


def test_every_assignment_with_a_notebook_has_a_release():
    """Does every source notebook have its generated twin in release/?"""
    assert ASSIGNMENTS, "no source notebooks found"
    for assignment in ASSIGNMENTS:
        for nb in (REPO / "source" / assignment).glob("*.ipynb"):
            assert (REPO / "release" / assignment / nb.name).is_file(), f"release/{assignment}/{nb.name} is missing"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_regenerated_identically(tmp_path, assignment):
    """Does `nbgrader generate_assignment` on source/ reproduce the committed release exactly?"""
    course = make_course(tmp_path / "course")
    folder = course / "release" / assignment
    files = lambda: {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    committed = files()
    nbgrader(course, "generate_assignment", assignment, "--force")
    fresh = files()
    assert sorted(fresh) == sorted(committed), "release/ lists other files than generate_assignment makes"
    for name, data in fresh.items():
        assert json.loads(data) == json.loads(committed[name]) if name.suffix == ".ipynb" else data == committed[name], (
            f"release/{assignment}/{name} is stale: run `.venv/bin/nbgrader generate_assignment {assignment} --force` and commit")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_no_solution_or_hidden_test(assignment):
    """Are the release notebooks free of solution code, hidden tests and their markers?"""
    for path in (REPO / "release" / assignment).glob("*.ipynb"):
        text = path.read_text()
        assert not MARKERS.search(text), f"{path.name} still contains a solution or hidden-test marker"
        released = {line.strip() for cell in nbformat.reads(text, as_version=4).cells for line in cell.source.splitlines()}
        leaked = _solution_lines(nbformat.read(REPO / "source" / assignment / path.name, as_version=4)) & released
        # Lines of given code may coincide with solution lines (a `return` shared by both); long ones must not.
        leaked = {line for line in leaked if len(line) > 40}
        assert not leaked, f"{path.name} leaks solution or hidden-test lines: {sorted(leaked)[:5]}"


def test_release_has_only_student_files():
    """Does release/ hold only student files: no caches, checkpoints or instructor-only assets?"""
    bad = [p.relative_to(REPO) for p in (REPO / "release").rglob("*")
           if p.is_file() and ((p.suffix not in STUDENT_FILE_TYPES and p.name not in STUDENT_FILES) or "instructor" in p.name
                               or any(part in {"__pycache__", ".ipynb_checkpoints"} for part in p.parts))]
    assert not bad, f"release/ contains files students must not get: {bad}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_students_validate_with_a_long_enough_cell_timeout(assignment):
    """Does a student's `nbgrader validate`, run in the released folder, allow training cells over 30 s?"""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO / "release" / assignment)).load_config()
    assert config.Execute.timeout >= 300


def test_nbgrader_config_loads_and_enables_course_preprocessors():
    """Does nbgrader_config.py load cleanly and switch on the course's preprocessors and timeout?

    nbgrader logs a broken config file and carries on with its defaults, so only a test notices.
    """
    from nbgrader.preprocessors import Execute

    from da6401.nbgrader_ext import HideHiddenTests, SandboxedExecute

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert config.CourseDirectory.course_id == "da6401"
    assert SandboxedExecute in config.Autograde.autograde_preprocessors
    assert Execute not in config.Autograde.autograde_preprocessors, "stock Execute would run notebooks unsandboxed"
    assert not config.Sandbox.get("run_unsandboxed", False), "the course configuration must not switch the sandbox off"
    assert config.SandboxedExecute.get("test_cells", "grader") == "grader"
    assert HideHiddenTests in config.GenerateFeedback.preprocessors
    assert config.Execute.timeout >= 300, "a cold `import torch` or a training cell outlasts nbgrader's 30 s default"


def test_source_copies_no_grading_asset_over_a_submission():
    """Would autograde's copy of source/<a>/ files leave every submitted checkpoint and result file alone?

    nbgrader copies each non-notebook file of source/<a>/ (outside CourseDirectory.ignore) into the
    autograded folder, over the student's file of the same name: a reference checkpoint left there
    would grade every student with the instructor's model. Such assets live in grader_tests/ or instructor/.
    """
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    ignored = config.CourseDirectory.ignore
    copied = [p.relative_to(REPO) for p in (REPO / "source").rglob("*")
              if p.is_file() and not any(part in ignored or any(fnmatch.fnmatch(part, pat) for pat in ignored)
                                         for part in p.relative_to(REPO / "source").parts)]
    assets = [p for p in copied if p.suffix not in STUDENT_FILE_TYPES and p.name not in STUDENT_FILES]
    assert not assets, f"autograde would copy these over submissions (move them to instructor/): {assets}"
    assert any(p.name == "train_reference.py" for p in (REPO / "source").rglob("*")), (
        "expected instructor-only files in source/ for this test to mean something")
