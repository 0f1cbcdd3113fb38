"""Autograde preprocessor: no active content from a student's notebook reaches a page staff or students open.

A notebook's outputs can carry HTML with scripts, JavaScript, SVG with event handlers or widget views. Shown
unsanitised (the feedback page, formgrader), they run in the browser of whoever opens it, with that person's
Jupyter session: a student could act as the TA. ``SanitizeOutputs`` runs after execution and cleans every code
cell's outputs with nbconvert's bleach-based ``SanitizeHTML`` (HTML and Markdown kept after cleaning, images and
text kept, JavaScript, SVG and anything else dropped). Markdown cells, where written answers are, are left to the
exporters' ``sanitize_html`` (``nbgrader_config.py``), which cleans what they render and keeps the source as the
student wrote it.
"""
from nbconvert.preprocessors.sanitize import SanitizeHTML


class SanitizeOutputs(SanitizeHTML):
    """nbconvert's SanitizeHTML, for code cell outputs only."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code":
            cell.outputs = self.sanitize_code_outputs(cell.outputs)
        return cell, resources
