"""The gradebook side of a class run: the template a job carries, and copying a job's result into the course's.

Only the driver writes the course's gradebook (SQLite allows one writer; with PostgreSQL it is still one
process, so a run's records arrive in one order). What it copies is what ``nbgrader autograde`` itself writes
(nbgrader's ``SaveAutoGrades``, ``AssignLatePenalties`` and the submission's timestamp), so the gradebook ends
up as a serial run leaves it; what a TA wrote (manual scores, comments, extra credit, flags) is kept.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

# The tables with students' data; every other table (course, assignments, notebooks, cells) goes into a template.
STUDENT_TABLES = {"student", "submitted_assignment", "submitted_notebook", "grade", "comment"}


def template(db_url: str, course_id: str, dest: Path) -> None:
    """A new SQLite gradebook at ``dest`` with the course's assignments, notebooks and cells from ``db_url``
    (any database nbgrader supports) and no student."""
    from nbgrader.api import Base, Gradebook
    from sqlalchemy import create_engine, select

    with Gradebook(f"sqlite:///{dest}", course_id):
        pass  # nbgrader's own schema and alembic version
    source, target = create_engine(db_url), create_engine(f"sqlite:///{dest}")
    try:
        with source.connect() as read, target.begin() as write:
            for table in Base.metadata.sorted_tables:
                if table.name not in STUDENT_TABLES:
                    rows = [dict(row._mapping) for row in read.execute(select(table))]
                    write.execute(table.delete())  # the course row nbgrader just made, replaced by the course's
                    if rows:
                        write.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


def extension(db_url: str, course_id: str, assignment: str, student: str) -> float | None:
    """The student's extension for the assignment in seconds, if the course's gradebook gives one."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id) as gb:
        try:
            given = gb.find_submission(assignment, student).extension
        except MissingEntry:
            return None
        return given.total_seconds() if given is not None else None


def prepare(db_url: str, course_id: str, assignment: str, student: str, extension_seconds: float | None) -> None:
    """In a job's gradebook, before grading: the student's extension, which nbgrader's late penalty reads."""
    if extension_seconds is None:
        return
    from nbgrader.api import Gradebook

    with Gradebook(db_url, course_id) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student, extension=timedelta(seconds=extension_seconds))


def read(db_url: str, course_id: str, assignment: str, student: str) -> dict | None:
    """What a job's gradebook holds for the student after ``nbgrader autograde`` (None: no submission).

    Returns:
        {"timestamp": ISO string or None, "notebooks": {notebook: {"late": penalty or None,
        "grades": {cell: [auto_score, needs_manual_grade]}, "comments": {cell: auto_comment}}}}
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return None
        return {"timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
                "notebooks": {nb.name: {"late": nb.late_submission_penalty,
                                        "grades": {g.name: [g.auto_score, bool(g.needs_manual_grade)] for g in nb.grades},
                                        "comments": {c.name: c.auto_comment for c in nb.comments}}
                              for nb in submission.notebooks}}


def write(db_url: str, course_id: str, assignment: str, student: str, got: dict) -> None:
    """Copy a job's :func:`read` into the course's gradebook, as ``nbgrader autograde`` would have written it."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    with Gradebook(db_url, course_id) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission, harmless, once per new submission
        try:
            gb.find_student(student)
        except MissingEntry:
            gb.add_student(student)  # what autograde does (create_student)
        kwargs = {"timestamp": got["timestamp"]} if got["timestamp"] else {}
        submission = gb.update_or_create_submission(assignment, student, **kwargs)
        for nb in submission.notebooks:
            done = got["notebooks"].get(nb.name)
            if done is None:
                continue
            nb.late_submission_penalty = done["late"]
            for grade in nb.grades:
                if grade.name in done["grades"]:
                    auto_score, needs_manual_grade = done["grades"][grade.name]
                    grade.auto_score = auto_score
                    # nbgrader's rule, with this gradebook's manual score: a TA's score stands and is reviewed
                    grade.needs_manual_grade = True if grade.manual_score is not None else needs_manual_grade
            for comment in nb.comments:
                if comment.name in done["comments"]:
                    comment.auto_comment = done["comments"][comment.name]
        gb.db.commit()
