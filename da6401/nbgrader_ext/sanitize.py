"""Autograde preprocessor: no active content from a student's notebook reaches a page staff or students open.

A notebook's outputs can carry HTML with scripts, JavaScript, SVG with event handlers or widget views, and a
written answer (a Markdown cell) can hold raw HTML. Shown unsanitised (the feedback page, formgrader: nbgrader's
templates render Markdown without cleaning it, whatever ``HTMLExporter.sanitize_html`` says), they run in the
browser of whoever opens it, with that person's Jupyter session: a student could act as the TA.
``SanitizeOutputs`` runs after execution, so that the autograded notebook both pages are made from is clean:

- every code cell's outputs go through nbconvert's bleach-based ``SanitizeHTML`` (HTML and Markdown kept after
  cleaning, images and text kept, JavaScript, SVG and anything else dropped);
- a Markdown cell that holds an HTML tag is cleaned with the same rules (scripts, event handlers and
  ``javascript:`` links go; the text stays). A cell without one is left exactly as written, so the TA grades
  the student's own words and nbgrader still sees an untouched answer as "No response."
"""
import re

from nbconvert.preprocessors.sanitize import SanitizeHTML
from traitlets import Bool

HTML_TAG = re.compile(r"<[a-zA-Z/!?]")  # a tag opens with no space after "<" (HTML parsing); "$x < y$" is not one


class SanitizeOutputs(SanitizeHTML):
    """nbconvert's SanitizeHTML for code cell outputs, and for Markdown cells only where they hold HTML."""

    # nbconvert's preprocessors are off unless enabled; listed in autograde_preprocessors, this one must run.
    enabled = Bool(True, help="Sanitise outputs and HTML in Markdown cells (on: it is a defence).").tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code":
            cell.outputs = self.sanitize_code_outputs(cell.outputs)
        elif cell.cell_type == "markdown" and HTML_TAG.search(cell.source):
            cell.source = self.sanitize_html_tags(cell.source)
        return cell, resources
