"""nbgrader preprocessors for this course, switched on in ``nbgrader_config.py``.

- :class:`DemoteStderr` (autograde): stderr in a graded cell no longer zeroes it.
- :class:`HideHiddenTests` (feedback): students see the failure report, not the hidden test code.
- :class:`BestNotebookExportPlugin` (export): an assignment offering a choice of notebooks counts the better one.
"""
from da6401.nbgrader_ext.demote_stderr import DemoteStderr
from da6401.nbgrader_ext.export import BestNotebookExportPlugin
from da6401.nbgrader_ext.hide_hidden_tests import HideHiddenTests

__all__ = ["BestNotebookExportPlugin", "DemoteStderr", "HideHiddenTests"]
