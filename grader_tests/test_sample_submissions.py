"""Does autograding give every sample submission exactly the points its expected.toml states?

Each folder in grader_tests/submissions/<assignment>/<name>/ is a submission named
by what it breaks, with the points it must lose beside it (see da6401.submissions).
One `nbgrader autograde` per assignment grades them all, in a temporary course.
"""
from __future__ import annotations

import itertools
import re
import tomllib

import nbformat
import pytest

from conftest import REPO
from da6401.submissions import SPECS, build_notebook, load_spec, notebook_of, spec_names

CASES = [(a.name, n) for a in sorted(SPECS.iterdir()) if a.is_dir() for n in spec_names(a.name)]


def graded_cells(assignment: str, name: str) -> dict[str, float]:
    """Autograded test cells of the source notebook that sample submission ``name`` submits: {grade_id: points}."""
    path = REPO / "source" / assignment / notebook_of(REPO, assignment, load_spec(assignment, name))
    cells = {}
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            cells[meta["grade_id"]] = meta["points"]
    return cells


def partial_points(assignment: str, name: str) -> dict[str, list[float]]:
    """{grade_id: [points of each test]} of the test cells that give partial credit (every test has @points)."""
    path = REPO / "source" / assignment / notebook_of(REPO, assignment, load_spec(assignment, name))
    partial = {}
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        tests = re.findall(r"^(@points\(([0-9.]+)\)\n)?def test_", cell.source, flags=re.M)
        if cell.cell_type == "code" and meta.get("grade") and tests and all(marker for marker, _ in tests):
            partial[meta["grade_id"]] = [float(p) for _, p in tests]
    return partial


def expected_scores(assignment: str, name: str) -> dict[str, float]:
    """{grade_id: expected points} from the submission's expected.toml."""
    expected = tomllib.loads((SPECS / assignment / name / "expected.toml").read_text())
    cells = graded_cells(assignment, name)
    if expected.get("lost") == "all":
        return {cell: 0 for cell in cells}
    lost = expected.get("lost", {})
    return {cell: points - lost.get(cell, 0) for cell, points in cells.items()}


@pytest.mark.parametrize("assignment,name", CASES)
def test_sample_submission_spec_is_valid(tmp_path, assignment, name):
    """Do the submission's edits still apply, and does expected.toml name real cells with losses they can give
    (a cell's points, or for a cell with partial credit the points of some of its tests)?"""
    spec = load_spec(assignment, name)
    assert spec.get("description"), "say in one sentence what this submission gets wrong"
    build_notebook(REPO, assignment, spec, notebook_of(REPO, assignment, spec))  # raises when an edit no longer applies
    expected = tomllib.loads((SPECS / assignment / name / "expected.toml").read_text())
    cells, partial = graded_cells(assignment, name), partial_points(assignment, name)
    if expected.get("lost") != "all":
        for cell, points in expected.get("lost", {}).items():
            assert cell in cells, f"expected.toml names {cell!r}, not a test cell of {assignment}"
            if cell in partial:
                sums = {sum(c) for k in range(len(partial[cell]) + 1) for c in itertools.combinations(partial[cell], k)}
                assert points in sums, f"{cell} gives points per test {partial[cell]}: {points} is no sum of them"
            else:
                assert points == cells[cell], f"{cell} is all-or-nothing: it loses {cells[cell]} points, not {points}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment,name", CASES)
def test_sample_submission_scores_as_expected(autograded, assignment, name):
    """Does this submission lose exactly the points of the parts it breaks, and keep the rest?"""
    _, scores = autograded(assignment)
    assert name in scores, f"{name} was not autograded"
    got = {cell: scores[name][cell][0] for cell in graded_cells(assignment, name)}
    expected = expected_scores(assignment, name)
    wrong = {cell: f"got {got[cell]}, expected {expected[cell]}" for cell in expected if got[cell] != expected[cell]}
    assert not wrong, f"{assignment}/{name}: {wrong}"


def hidden_source_lines(assignment: str) -> set[str]:
    """Lines of the hidden tests of an assignment's source notebooks (whitespace-normalised, at least 16
    characters, and not also a line of a released notebook: those a student has seen anyway)."""
    normalise = lambda line: " ".join(line.split())  # noqa: E731
    released = {normalise(line) for nb in (REPO / "release" / assignment).glob("*.ipynb")
                for cell in nbformat.read(nb, as_version=4).cells for line in cell.source.splitlines()}
    hidden = set()
    for nb in (REPO / "source" / assignment).glob("*.ipynb"):
        for cell in nbformat.read(nb, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END HIDDEN TESTS" in line:
                    inside = False
                elif inside and len(normalise(line)) >= 16 and normalise(line) not in released:
                    hidden.add(normalise(line))
    return hidden


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted({a for a, _ in CASES}))
def test_feedback_shows_no_line_of_hidden_tests_and_agrees_with_the_score_report(autograded, assignment):
    """Is there a feedback page per graded submission that shows no line of hidden-test source (in the cell, the
    report or a traceback), and whose total is the score report's?"""
    import html as html_lib

    course, scores = autograded(assignment)
    hidden = hidden_source_lines(assignment)
    assert len(hidden) > 10, "the source notebooks should have hidden tests for this test to mean something"
    for student, cells in scores.items():
        pages = list((course / "feedback" / student / assignment).glob("*.html"))
        assert pages, f"no feedback page for {student}"
        for page in pages:
            text = html_lib.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
            words = " ".join(text.split())
            shown = [line for line in hidden if line in words]
            assert not shown, f"feedback for {student} ({page.name}) shows hidden test code: {shown[:3]}"
            total, out_of = map(float, re.search(rf"{page.stem} \(Score: ([\d.]+) / ([\d.]+)\)", text).groups())
            own = [cell for cell in graded_cells_of_notebook(assignment, page.stem) if cell in cells]
            assert total == sum(cells[c][0] or 0 for c in own), f"{student}: feedback total {total} vs the score report"


def graded_cells_of_notebook(assignment: str, notebook: str) -> list[str]:
    """grade_ids of every graded cell (tests and written answers) of one source notebook."""
    path = REPO / "source" / assignment / f"{notebook}.ipynb"
    return [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(path, as_version=4).cells
            if c.metadata.get("nbgrader", {}).get("grade")]


def test_an_edit_that_no_longer_applies_fails_loudly():
    """When the notebook changes under a sample submission, does assembling it fail instead of grading the reference?"""
    (notebook,) = (REPO / "release" / "a1_mlp").glob("*.ipynb")
    stale = {"base": "reference", "edit": [{"cell": "optimizers", "old": "text that is not there", "new": "x"}]}
    with pytest.raises(ValueError, match="occurs 0 times"):
        build_notebook(REPO, "a1_mlp", stale, notebook.name)
    with pytest.raises(ValueError, match="not in"):
        build_notebook(REPO, "a1_mlp", {"edit": [{"cell": "no_such_cell", "source": ""}]}, notebook.name)


def test_files_from_copies_shared_files_first_and_own_files_last(tmp_path):
    """Does a submission built from two specs' files get the later spec's checkpoint and the earlier one's results?"""
    from da6401.submissions import SPECS, copy_files, load_spec

    spec = load_spec("a2_cnn", "checkpoint_from_other_architecture")
    assert spec["files_from"] == ["reference", "alternative_architecture"]
    copy_files("a2_cnn", spec, tmp_path)
    reference, other = SPECS / "a2_cnn" / "reference" / "files", SPECS / "a2_cnn" / "alternative_architecture" / "files"
    assert (tmp_path / "cnn_cifar10.pt").read_bytes() == (other / "cnn_cifar10.pt").read_bytes()
    assert (tmp_path / "cnn_cifar10.pt").read_bytes() != (reference / "cnn_cifar10.pt").read_bytes()
    assert (tmp_path / "experiments.json").read_bytes() == (reference / "experiments.json").read_bytes()
    with pytest.raises(ValueError, match="has no files/ folder"):
        copy_files("a2_cnn", {**spec, "files_from": ["untouched"]}, tmp_path)


def test_rewrite_swaps_checkpoint_entries_and_keeps_the_weights(tmp_path):
    """Does [[rewrite]] re-save the copied checkpoint with the vocabularies swapped, weights untouched?"""
    import torch

    from da6401.submissions import SPECS, copy_files, load_spec

    copy_files("a3_seq2seq", load_spec("a3_seq2seq", "vocab_mismatch_checkpoint"), tmp_path)
    original = torch.load(SPECS / "a3_seq2seq" / "reference" / "files" / "seq2seq_multi30k.pt", weights_only=True)
    rewritten = torch.load(tmp_path / "seq2seq_multi30k.pt", weights_only=True)
    assert original["src_itos"] != original["tgt_itos"]
    assert (rewritten["src_itos"], rewritten["tgt_itos"]) == (original["tgt_itos"], original["src_itos"])
    assert all(torch.equal(rewritten["state_dict"][k], v) for k, v in original["state_dict"].items())


def test_a_sample_of_a_two_notebook_assignment_must_name_a_released_notebook():
    """Is an A4 sample that names no notebook, or one that is not released, refused with a message saying so?"""
    from da6401.submissions import notebook_of

    assert notebook_of(REPO, "a4_generative", {"notebook": "vit.ipynb"}) == "vit.ipynb"
    assert notebook_of(REPO, "a1_mlp", {}) == "mlp_backprop.ipynb"
    with pytest.raises(ValueError, match="say which one"):
        notebook_of(REPO, "a4_generative", {"name": "no_notebook"})
    with pytest.raises(ValueError, match="is not in release"):
        notebook_of(REPO, "a4_generative", {"name": "typo", "notebook": "gan.ipynb"})
