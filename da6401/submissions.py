"""Assemble sample submissions into ``submitted/<student>/<assignment>/``.

A sample submission is a folder ``grader_tests/submissions/<assignment>/<name>/``
holding ``submission.toml`` (how to build the notebook) and ``expected.toml``
(the points it must lose). The student id is the folder name. ``submission.toml``:

    description = "What this submission gets wrong, in one sentence."
    base = "reference"          # or "release": the untouched student notebook
    notebook = "dcgan.ipynb"    # which notebook, when the assignment has several (A4); the submission holds only it

    [[edit]]                    # optional, applied in order to the base
    cell = "optimizers"         # an nbgrader grade_id in the notebook
    old = "m_hat = m / (1 - self.beta1 ** t)"   # must occur exactly once in that cell
    new = "m_hat = m"

    [[edit]]
    cell = "softmax_ce"
    source = '''...'''          # replaces the whole cell

``base = "reference"`` starts from the released notebook with every solution
cell (code and written answers) filled in from ``source/``, markers removed:
the reference solution submitted as a student would. Files in the spec's
``files/`` folder (checkpoints, say) are copied beside the notebook, after
those of the specs named in ``files_from`` (so several submissions share one
committed checkpoint):

    files_from = ["reference"]  # copy reference/files/ first, then this spec's own files/
    without = ["cnn_cifar10.pt"]  # then delete these (a submission that forgot a file)

    [[rewrite]]                 # then re-save a copied checkpoint with top-level entries replaced by others
    file = "seq2seq_multi30k.pt"  # (a submission that saved the right weights with the wrong vocabularies)
    entries = { src_itos = "tgt_itos", tgt_itos = "src_itos" }
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "grader_tests" / "submissions"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION")


def spec_names(assignment: str) -> list[str]:
    """Names of the sample submissions of an assignment, sorted."""
    folder = SPECS / assignment
    return sorted(p.parent.name for p in folder.glob("*/submission.toml"))


def _cells_by_id(nb) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def _strip_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not any(m in line for m in MARKERS))


def reference_notebook(course: Path, assignment: str, notebook: str):
    """The released notebook with every solution cell taken from source/, markers removed."""
    nb = nbformat.read(course / "release" / assignment / notebook, as_version=4)
    solutions = _cells_by_id(nbformat.read(course / "source" / assignment / notebook, as_version=4))
    for grade_id, cell in _cells_by_id(nb).items():
        if cell.metadata["nbgrader"].get("solution"):
            cell.source = _strip_markers(solutions[grade_id].source)
    return nb


def build_notebook(course: Path, assignment: str, spec: dict, notebook: str):
    """Build the submission notebook that ``spec`` (a parsed submission.toml) describes.

    Raises:
        ValueError: unknown base, unknown cell, or an ``old`` text that does not occur exactly once.
    """
    base = spec.get("base", "reference")
    if base == "reference":
        nb = reference_notebook(course, assignment, notebook)
    elif base == "release":
        nb = nbformat.read(course / "release" / assignment / notebook, as_version=4)
    else:
        raise ValueError(f"base must be 'reference' or 'release', not {base!r}")
    cells = _cells_by_id(nb)
    for edit in spec.get("edit", []):
        cell = cells.get(edit["cell"])
        if cell is None:
            raise ValueError(f"edit names cell {edit['cell']!r}, which is not in {notebook}")
        if "source" in edit:
            cell.source = edit["source"].strip("\n")
            continue
        count = cell.source.count(edit["old"])
        if count != 1:
            raise ValueError(f"cell {edit['cell']!r}: the text to replace occurs {count} times, not once:\n{edit['old']}")
        cell.source = cell.source.replace(edit["old"], edit["new"])
    return nb


def copy_files(assignment: str, spec: dict, target: Path) -> None:
    """Copy the files of a parsed submission.toml (``files_from`` specs first, then its own) into ``target``,
    then delete the names listed in ``without`` and apply the ``rewrite`` entries.

    Raises:
        ValueError: ``files_from`` names a sample submission without a files/ folder.
    """
    spec_dir = SPECS / assignment / spec["name"]
    for other in spec.get("files_from", []):
        if not (SPECS / assignment / other / "files").is_dir():
            raise ValueError(f"{spec['name']}: files_from names {other!r}, which has no files/ folder")
        shutil.copytree(SPECS / assignment / other / "files", target, dirs_exist_ok=True)
    if (spec_dir / "files").is_dir():
        shutil.copytree(spec_dir / "files", target, dirs_exist_ok=True)
    for name in spec.get("without", []):
        (target / name).unlink()
    for rewrite in spec.get("rewrite", []):
        import torch  # only the PyTorch assignments' samples rewrite checkpoints

        saved = torch.load(target / rewrite["file"], map_location="cpu", weights_only=True)
        torch.save({**saved, **{key: saved[source] for key, source in rewrite["entries"].items()}},
                   target / rewrite["file"])


def notebook_of(course: Path, assignment: str, spec: dict) -> str:
    """The released notebook a parsed submission.toml builds: its ``notebook``, or the assignment's only one.

    Raises:
        ValueError: the named notebook is not released, or the assignment has several and the spec names none.
    """
    notebooks = sorted(p.name for p in (course / "release" / assignment).glob("*.ipynb"))
    if "notebook" in spec:
        if spec["notebook"] not in notebooks:
            raise ValueError(f"{spec.get('name', 'spec')}: notebook {spec['notebook']!r} is not in release/{assignment} "
                             f"({notebooks}); run generate_assignment")
        return spec["notebook"]
    if len(notebooks) != 1:
        raise ValueError(f"{spec.get('name', 'spec')}: release/{assignment} has notebooks {notebooks}; "
                         "say which one with notebook = \"...\" in submission.toml")
    return notebooks[0]


def load_spec(assignment: str, name: str) -> dict:
    """The parsed submission.toml of a sample submission, with its ``name``.

    Raises:
        ValueError: there is no such sample submission.
    """
    path = SPECS / assignment / name / "submission.toml"
    if not path.is_file():
        raise ValueError(f"no sample submission {name!r}: {path} is missing")
    return {**tomllib.loads(path.read_text()), "name": name}


def assemble(assignment: str, names: list[str] | None = None, course: Path = REPO) -> list[Path]:
    """Write the named sample submissions (default: all) into course/submitted/<name>/<assignment>/.

    Returns:
        The submission folders written, replacing any earlier copy.
    """
    written = []
    for name in names or spec_names(assignment):
        spec = load_spec(assignment, name)
        notebook = notebook_of(course, assignment, spec)
        target = course / "submitted" / name / assignment
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        nbformat.write(build_notebook(course, assignment, spec, notebook), target / notebook)
        copy_files(assignment, spec, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m da6401.submissions",
        description="Assemble sample submissions (reference, faulty, alternative) for nbgrader autograde.",
        epilog="examples:\n"
               "  python -m da6401.submissions list a1_mlp\n"
               "  python -m da6401.submissions assemble a1_mlp reference\n"
               "  python -m da6401.submissions assemble a1_mlp            # all of them\n"
               "  .venv/bin/nbgrader autograde a1_mlp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("list", "assemble"):
        p = sub.add_parser(command)
        p.add_argument("assignment")
        if command == "assemble":
            p.add_argument("names", nargs="*", help="sample submissions to assemble (default: all)")
            p.add_argument("--course", type=Path, default=Path.cwd(), help="course directory (default: here)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in spec_names(args.assignment):
            spec = tomllib.loads((SPECS / args.assignment / name / "submission.toml").read_text())
            print(f"{name:32s} {spec.get('description', '')}")
        return 0
    try:
        for path in assemble(args.assignment, args.names, args.course.resolve()):
            print(f"assembled {path}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
