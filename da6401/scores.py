"""Read autograded scores from nbgrader's gradebook and print them as a table.

    python -m da6401.scores a1_mlp            # from the course directory
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry


def _handed_in(course: Path, assignment: str, submission) -> list:
    """The submission's notebooks that autograde ran. nbgrader records every notebook of the assignment for each
    submission, with unscored grades for a notebook the student did not hand in (A4 asks for one of two)."""
    folder = course / "autograded" / submission.student.id / assignment
    return [nb for nb in submission.notebooks if (folder / f"{nb.name}.ipynb").is_file()]


def cell_scores(course: Path, assignment: str) -> dict[str, dict[str, tuple[float | None, float]]]:
    """Per student, per graded cell: (score, max score). Score is None while a cell awaits manual grading.

    Args:
        course: the course directory holding gradebook.db.
        assignment: the assignment id.
    Returns:
        {student_id: {grade_id: (score, max_score)}} for every autograded submission.
    """
    table = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for submission in gb.assignment_submissions(assignment):
            row = {}
            for notebook in _handed_in(course, assignment, submission):
                for grade in notebook.grades:
                    needs_manual = grade.needs_manual_grade and grade.manual_score is None
                    row[grade.name] = (None if needs_manual else grade.score, grade.max_score)
            table[submission.student.id] = row
    return table


def unscored(course: Path, assignment: str, table: dict) -> dict[str, str]:
    """Submissions that autograde did not score, with the reason, so that none goes unnoticed.

    nbgrader skips a submission folder without the notebook (a warning in a long log), and keeps
    a record without scores for a notebook it could not run (corrupt JSON, say).

    Returns:
        {student_id: reason} for submitted/<student>/<assignment>/ folders with no scored cell.
    """
    problems = {}
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        student = folder.parent.name
        if student not in table:
            found = sorted(p.name for p in folder.iterdir()) or ["nothing"]
            problems[student] = f"not graded: no notebook of {assignment} in the submission (found: {', '.join(found)})"
        elif all(score is None for score, _ in table[student].values()):
            problems[student] = "not graded: autograde failed on this notebook (corrupt? see nbgrader's log)"
    return problems


def deleted_test_cells(course: Path, assignment: str) -> dict[str, list[str]]:
    """Test cells a student deleted: nbgrader cannot run them and leaves them for manual grading.

    Returns:
        {student_id: [grade_id, ...]} for autograded code cells that have no automatic score.
    """
    deleted = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for submission in gb.assignment_submissions(assignment):
            cells = [g.name for nb in _handed_in(course, assignment, submission) for g in nb.grades
                     if g.cell_type == "code" and g.auto_score is None]
            if cells:
                deleted[submission.student.id] = cells
    return deleted


def faults(course: Path, assignment: str) -> dict[str, list[str]]:
    """Why autograde stopped a notebook early (a limit, a kernel that died), from the autograded notebooks.

    Returns:
        {student_id: ["<notebook>: <reason> in cell <name>", ...]} for the submissions that hit a fault.
    """
    import nbformat

    from da6401.nbgrader_ext.execute import FAULT_NAME

    found: dict[str, list[str]] = {}
    for path in sorted((course / "autograded").glob(f"*/{assignment}/*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # unreadable: unscored() names it
            continue
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and output.get("ename") == FAULT_NAME:
                    name = cell.metadata.get("nbgrader", {}).get("grade_id", "a cell")
                    reason = output.get("evalue", "").split(" in this cell")[0]
                    found.setdefault(path.parent.parent.name, []).append(f"{path.stem}: {reason} in cell {name}")
    return found


def format_table(table: dict[str, dict[str, tuple[float | None, float]]]) -> str:
    """One row per student, one column per graded cell, then the total as the feedback page shows it.

    The total counts a written answer still to be graded by a TA (shown "TA") as 0 of its points, as nbgrader's
    feedback does; "to grade" says how many points that leaves open. A cell of a notebook the student did not
    submit (A4 offers two) shows as "-".
    """
    if not table:
        return "(no autograded submissions)"
    cells = list(dict.fromkeys(c for row in table.values() for c in row))
    header = ["student"] + [c.removeprefix("test_") for c in cells] + ["total", "to grade"]
    rows = []
    for student, row in sorted(table.items()):
        scored = sum(s for s, _ in row.values() if s is not None)
        pending = sum(m for s, m in row.values() if s is None)
        rows.append([student] + ["-" if c not in row else "TA" if row[c][0] is None else f"{row[c][0]:g}" for c in cells]
                    + [f"{scored:g}/{sum(m for _, m in row.values()):g}", f"{pending:g}" if pending else ""])
    maxima = ["(max)"] + [f"{next(row[c][1] for row in table.values() if c in row):g}" for c in cells] + ["", ""]
    widths = [max(len(r[i]) for r in [header, maxima] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join(fmt(r) for r in [header, maxima] + rows)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="nbgrader.api")  # SQLAlchemy session chatter, not a problem
    parser = argparse.ArgumentParser(prog="python -m da6401.scores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("--course", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    try:
        table = cell_scores(args.course.resolve(), args.assignment)
        problems = unscored(args.course.resolve(), args.assignment, table)
        print(format_table({k: v for k, v in table.items() if k not in problems}))
        for student, reason in problems.items():
            print(f"{student}: {reason}")
        for student, reasons in faults(args.course.resolve(), args.assignment).items():
            print(f"{student}: stopped early, so the test cells after it scored 0: {'; '.join(reasons)}")
        for student, cells in deleted_test_cells(args.course.resolve(), args.assignment).items():
            if student not in problems:
                print(f"{student}: test cells missing from the notebook (deleted?), left for a TA by nbgrader: "
                      f"{', '.join(cells)}")
    except MissingEntry as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
