"""nbgrader configuration for DA6401. The repository root is the course directory.

Run every nbgrader command from the repository root, with the course's venv:
    .venv/bin/nbgrader generate_assignment a1_mlp
    .venv/bin/nbgrader autograde a1_mlp
    .venv/bin/nbgrader generate_feedback a1_mlp
"""
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    Execute,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor

from da6401.nbgrader_ext import BestNotebookExportPlugin, DemoteStderr, HideHiddenTests

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "da6401"
# The root is the folder nbgrader runs in (the repository root), so tests can
# run the same configuration in a temporary copy of the course.

# Instructor-only material and build debris never reach release/, and nbgrader's
# copy of non-notebook files from source/ never overwrites a student's files with them.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints", "*.pyc", "__pycache__", ".pytest_cache", "feedback",
    "instructor", "*.instructor.*",
]

# Training cells and a cold `import torch` take longer than nbgrader's default 30 s.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True

# Stock pipeline, plus DemoteStderr between execution and scoring (see its docstring).
c.Autograde.autograde_preprocessors = [
    Execute,
    DemoteStderr,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]

# Feedback shows each test cell's report but not the hidden tests' code.
c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# `nbgrader export`: A4 offers two notebooks (DCGAN or ViT) and counts the better one, not their sum.
c.ExportApp.plugin_class = BestNotebookExportPlugin
c.BestNotebookExportPlugin.best_of = ["a4_generative"]
