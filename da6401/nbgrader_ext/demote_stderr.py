"""Autograde preprocessor: stderr output in a graded cell is reported, not punished.

Stock nbgrader scores a code cell 0 when any of its outputs is a stream named
``stderr`` (``nbgrader.utils.determine_grade``), so a PyTorch ``UserWarning`` or a
progress bar zeroes a correct answer. Run after ``Execute`` and before
``SaveAutoGrades``, this turns such outputs into stdout, each line marked
``[stderr]``. Errors (exceptions, failed tests) still score 0.
"""
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode


class DemoteStderr(NbGraderPreprocessor):
    """Rewrite stderr streams of graded code cells as stdout, marked with a prefix."""

    prefix = Unicode("[stderr] ", help="Text put before every line that came from stderr.").tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
                    output.text = "".join(self.prefix + line for line in output.text.splitlines(keepends=True))
        return cell, resources
