"""nbgrader configuration for DA6401. The repository root is the course directory.

Run every nbgrader command from the repository root, with the course's venv:
    .venv/bin/nbgrader generate_assignment a1_mlp
    .venv/bin/nbgrader autograde a1_mlp
    .venv/bin/nbgrader generate_feedback a1_mlp

Under autograde every notebook runs in its own bubblewrap sandbox (da6401.sandbox), and its test cells run in
the trusted grader, outside it (da6401.grader): the student's code computes, the grader decides.
"""
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor

from da6401.nbgrader_ext import BestNotebookExportPlugin, HideHiddenTests, SandboxedExecute, SanitizeOutputs
from da6401.sandbox import Sandbox

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

# The stock pipeline, with the sandboxed, trusted executor in place of nbgrader's Execute.
c.Autograde.autograde_preprocessors = [
    SandboxedExecute,
    SanitizeOutputs,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Fail closed before anything is copied: no bubblewrap, no grading (the message says what to do).
c.Autograde.pre_convert_hook = lambda **kw: Sandbox(config=c).probe()

# The sandbox and its limits (defaults suit the course on 2 cores: da6401/sandbox/limits.py). Per assignment:
# c.SandboxLimits.per_assignment = {"a2_cnn": {"notebook_seconds": 1200}}
# Only for notebooks you trust: c.Sandbox.run_unsandboxed = True

# Feedback shows each test cell's report but not the hidden tests' code. The autograded notebook it is made from
# (and formgrader shows) was cleaned by SanitizeOutputs: nbgrader's own templates render Markdown uncleaned.
# sanitize_html cleans what the stock nbconvert templates render (an exported notebook, say).
c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
c.HTMLExporter.sanitize_html = True

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# `nbgrader export`: A4 offers two notebooks (DCGAN or ViT) and counts the better one, not their sum.
c.ExportApp.plugin_class = BestNotebookExportPlugin
c.BestNotebookExportPlugin.best_of = ["a4_generative"]
