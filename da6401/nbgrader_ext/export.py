"""``nbgrader export`` for DA6401: nbgrader's grades CSV, except for assignments that offer a choice of notebooks.

Assignment 4 ships two notebooks (a DCGAN and a Vision Transformer) and a student does one of them, or both;
its grade is the better notebook, not their sum as nbgrader's own exporter would write. Name such
assignments in ``nbgrader_config.py``::

    c.ExportApp.plugin_class = BestNotebookExportPlugin
    c.BestNotebookExportPlugin.best_of = ["a4_generative"]

For them, ``raw_score`` is the best notebook's fraction of its own maximum times ``max_score``, and ``max_score``
is the largest notebook maximum (with equal maxima: the better of the two scores). Every other assignment is
exported exactly as nbgrader's CSV exporter does; the columns are the same.
"""
from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import List, Unicode

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
           "raw_score", "late_submission_penalty", "score", "max_score"]


def best_fraction(notebooks) -> float:
    """The better of a submission's notebooks, as a fraction of that notebook's maximum.

    Inputs: notebooks, nbgrader SubmittedNotebooks (``score``, ``max_score``); one the student did not do scores 0.
    Returns: a float in [0, 1].
    """
    return max(((nb.score or 0.0) / nb.max_score for nb in notebooks if nb.max_score), default=0.0)


class BestNotebookExportPlugin(ExportPlugin):
    """nbgrader's CSV export, with the assignments in ``best_of`` graded as their best notebook."""

    best_of = List(Unicode(), help="assignments whose grade is the better of their notebooks").tag(config=True)

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        students, assignments = [str(s) for s in self.student], [str(a) for a in self.assignment]
        self.log.info("Exporting grades to %s (best notebook for: %s)", dest, ", ".join(self.best_of) or "none")
        with open(dest, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                best = assignment.name in self.best_of
                out_of = max(nb.max_score for nb in assignment.notebooks) if best else assignment.max_score
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
                           "last_name": student.last_name, "first_name": student.first_name,
                           "email": student.email, "max_score": out_of}
                    try:
                        submission = gradebook.find_submission(assignment.name, student.id)
                    except MissingEntry:  # nothing submitted: zero, as nbgrader's exporter does
                        row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                    else:
                        raw = best_fraction(submission.notebooks) * out_of if best else submission.score
                        penalty = submission.late_submission_penalty or 0.0
                        row.update(timestamp=submission.timestamp, raw_score=raw, late_submission_penalty=penalty,
                                   score=max(0.0, raw - penalty))
                    writer.writerow({k: "" if v is None else v for k, v in row.items()})
