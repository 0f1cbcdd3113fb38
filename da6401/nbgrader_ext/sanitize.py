"""Autograde preprocessor: no active content from a student's notebook reaches a page staff or students open.

A notebook's outputs can carry HTML with scripts, JavaScript, SVG with event handlers or widget views, and a
written answer (a Markdown cell) can hold raw HTML. Shown unsanitised (the feedback page, formgrader: nbgrader's
templates render Markdown without cleaning it, whatever ``HTMLExporter.sanitize_html`` says), they run in the
browser of whoever opens it, with that person's Jupyter session: a student could act as the TA.
``SanitizeOutputs`` runs after execution, so that the autograded notebook both pages are made from is clean:

- every code cell's outputs go through nbconvert's bleach-based ``SanitizeHTML`` (HTML and Markdown kept after
  cleaning, images and text kept, JavaScript, SVG and anything else dropped);
- output metadata keeps only numeric image sizes and flags: nbconvert's templates write ``width={{ width }}``
  unquoted into the ``<img>`` tag, so a width of ``1 onerror=...`` would add an attribute; image data must be
  base64;
- a Markdown link whose target is a ``javascript:``, ``vbscript:`` or ``data:`` URL (in a cell or a Markdown output)
  is made inert: the renderer would write it as a live ``<a href>``, and it holds no tag for the cleaner to see;
- a Markdown cell that holds an HTML tag is cleaned with the same rules (scripts, event handlers and
  ``javascript:`` links go; the text stays). A cell without one is left exactly as written, so the TA grades
  the student's own words and nbgrader still sees an untouched answer as "No response."
"""
import re

from nbconvert.preprocessors.sanitize import SanitizeHTML
from traitlets import Bool

BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
SIZE = re.compile(r"[0-9]{1,5}(\.[0-9]{1,3})?")


def _clean_metadata(metadata: dict) -> dict:
    """Only numeric ``width``/``height`` (per MIME type or at the top) and boolean flags survive."""
    def clean(entries: dict) -> dict:
        kept = {}
        for key, value in entries.items():
            if key in ("width", "height") and not isinstance(value, bool) and SIZE.fullmatch(str(value)):
                kept[key] = value
            elif isinstance(value, bool):
                kept[key] = value
        return kept

    out = clean(metadata)
    for key, value in metadata.items():
        if isinstance(value, dict) and "/" in key:
            out[key] = clean(value)
    return out


def _clean_images(outputs: list) -> list:
    for output in outputs:
        if "metadata" in output:
            output["metadata"] = _clean_metadata(dict(output["metadata"]))
        data = output.get("data", {})
        for mime in [m for m in data if m.startswith("image/") and m != "image/svg+xml"]:
            if not isinstance(data[mime], str) or not BASE64.fullmatch(data[mime]):
                del data[mime]
    return outputs


# A Markdown link or reference whose target is a script URL ([x](javascript:...), [x]: javascript:...): the renderer
# turns it into <a href="javascript:...">, with no HTML tag in the source for bleach to see.
SCRIPT_LINK = re.compile(r"(?i)(\]\(\s*<?|^\s{0,3}\[[^\]]+\]:\s*<?)\s*(javascript|vbscript|data)\s*:", re.M)


def _defuse_links(markdown: str) -> str:
    """``markdown`` with every link target that is a script URL made inert (``javascript:`` -> ``#blocked-javascript``)."""
    return SCRIPT_LINK.sub(lambda m: f"{m.group(1)}#blocked-{m.group(2).lower()}-", markdown)


HTML_TAG = re.compile(r"<[a-zA-Z/!?]")  # a tag opens with no space after "<" (HTML parsing); "$x < y$" is not one


class SanitizeOutputs(SanitizeHTML):
    """nbconvert's SanitizeHTML for code cell outputs, and for Markdown cells only where they hold HTML."""

    # nbconvert's preprocessors are off unless enabled; listed in autograde_preprocessors, this one must run.
    enabled = Bool(True, help="Sanitise outputs and HTML in Markdown cells (on: it is a defence).").tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code":
            cell.outputs = _clean_images(self.sanitize_code_outputs(cell.outputs))
            for output in cell.outputs:
                data = output.get("data", {})
                if isinstance(data.get("text/markdown"), str):
                    data["text/markdown"] = _defuse_links(data["text/markdown"])
        elif cell.cell_type == "markdown":
            if HTML_TAG.search(cell.source):
                cell.source = self.sanitize_html_tags(cell.source)
            cell.source = _defuse_links(cell.source)
        return cell, resources
