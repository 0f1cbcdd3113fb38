"""Feedback preprocessor: show that hidden tests ran, and how they failed, not their code.

Stock ``nbgrader generate_feedback`` renders the autograded notebook, whose test
cells hold the hidden tests in full. This replaces each
``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region with one line.
The cell's outputs stay: the pytest report names each failed test and the values
that differed, which is what explains the lost points. The one exception is an
error's traceback, which quotes the whole cell (``run_cell_magic('tests', '', '<source>')``):
it is cut to its last line, ``TestsFailed: <which tests failed and why>``.
"""
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode


class HideHiddenTests(NbGraderPreprocessor):
    """Replace hidden-test regions in code cells with a placeholder; shorten their error tracebacks."""

    begin_delimiter = Unicode("BEGIN HIDDEN TESTS", help="Marker opening a hidden-test region.").tag(config=True)
    end_delimiter = Unicode("END HIDDEN TESTS", help="Marker closing a hidden-test region.").tag(config=True)
    placeholder = Unicode(
        "# ({n} lines of hidden tests: their results are in the report below)",
        help="Replacement line; {n} is the number of hidden lines.",
    ).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or self.begin_delimiter not in cell.source:
            return cell, resources
        kept, hidden = [], None
        for line in cell.source.splitlines():
            if hidden is None and self.begin_delimiter in line:
                hidden = 0
            elif hidden is not None and self.end_delimiter in line:
                indent = line[: len(line) - len(line.lstrip())]
                kept.append(indent + self.placeholder.format(n=hidden))
                hidden = None
            elif hidden is not None:
                hidden += 1
            else:
                kept.append(line)
        if hidden is not None:  # unterminated region: hide the rest rather than leak it
            kept.append(self.placeholder.format(n=hidden))
        cell.source = "\n".join(kept)
        for output in cell.outputs:
            if output.output_type == "error":
                output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources
