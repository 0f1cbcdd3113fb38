"""nbgrader preprocessors for this course, switched on in ``nbgrader_config.py``.

- :class:`SandboxedExecute` (autograde): every notebook runs in its own sandbox, within limits; faults give reasons.
- :class:`SanitizeOutputs` (autograde): no script in an output reaches a browser.
- :class:`HideHiddenTests` (feedback): students see the failure report, not the hidden test code.
- :class:`BestNotebookExportPlugin` (export): an assignment offering a choice of notebooks counts the better one.
"""
from da6401.nbgrader_ext.execute import SandboxedExecute
from da6401.nbgrader_ext.export import BestNotebookExportPlugin
from da6401.nbgrader_ext.hide_hidden_tests import HideHiddenTests
from da6401.nbgrader_ext.sanitize import SanitizeOutputs

__all__ = ["BestNotebookExportPlugin", "HideHiddenTests", "SandboxedExecute", "SanitizeOutputs"]
