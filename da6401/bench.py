"""Reference runs: execute an assignment's reference notebook and print its figures.

    python -m da6401.bench a1_mlp
    python -m da6401.bench overhead          # what the sandbox and the trusted grader cost (da6401.timing)
    python -m da6401.bench grade             # a class graded by nbgrader autograde and by da6401.grade: the ratio
    python -m da6401.bench a2_cnn --keep grader_tests/submissions/a2_cnn/reference/files
    python -m da6401.bench a2_cnn --submission linear_classifier_baseline \
        --keep grader_tests/submissions/a2_cnn/linear_classifier_baseline/files

The reference notebook is the released notebook with the source's solutions filled
in (what `python -m da6401.submissions assemble <a> reference` submits). It runs
top to bottom in a fresh kernel and an empty folder, as a student's first
"Restart & Run All" would, so it trains everything; then one extra cell prints
the metrics the notebook computed. The output ends with a row for README's
reference-run table. ``--keep DIR`` copies the files the notebook wrote (a
checkpoint, experiment results) to DIR: that is how the committed sample
checkpoints are made. ``--submission NAME`` runs a sample submission instead;
its files other than checkpoints (experiment results, say) are put beside the
notebook first, so only its model trains. Cells that raise (a weak baseline failing the
notebook's own tests) are named, and the run goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from da6401.submissions import REPO, build_notebook, copy_files, load_spec, notebook_of

# Variables each reference notebook leaves behind, printed by the benchmark.
METRICS = {
    "a1_mlp": {"test_acc": "MNIST test accuracy", "train_seconds": "training time (s)"},
    "a2_cnn": {"test_acc": "CIFAR-10 test accuracy", "train_seconds": "training time (s)",
               "experiment_seconds": "experiments (s)"},
    "a3_seq2seq": {"test_bleu": "test_2016_flickr sacreBLEU (greedy, detokenised)", "train_seconds": "training time (s)"},
    # A4 has two notebooks (run one with --submission dcgan_reference or vit_reference); each sets its own names.
    "a4_generative": {"dcgan_fid": "Frechet distance in the judge's feature space (MNIST test)",
                      "dcgan_coverage": "classes covered (judge)", "vit_test_acc": "CIFAR-10 test accuracy",
                      "train_seconds": "training time (s)"},
}
# Code run after the notebook, before the metrics are printed: figures a notebook cannot compute itself.
# (The DCGAN notebook has no MNIST judge; that is an instructor-only asset.)
PROBES = {
    "a4_generative": "if 'Generator' in globals():\n"
                     "    from da6401.grader.generative import generate\n"
                     "    from da6401.grader.judge import judge_samples\n"
                     "    _stats = judge_samples(generate(G))\n"
                     "    dcgan_fid, dcgan_coverage = _stats.fid, _stats.covered(0.03)\n"
                     "    print(_stats)\n",
}
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def machine() -> str:
    """A short description of this machine: CPU model and core count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def run(assignment: str, submission: str = "reference", keep: Path | None = None) -> dict:
    """Execute a sample submission's notebook (default: the reference) outside autograde, so it trains.

    Returns:
        The notebook's metrics (None where it left a variable unset) and its wall time.
    """
    spec = load_spec(assignment, submission)
    nb = build_notebook(REPO, assignment, spec, notebook_of(REPO, assignment, spec))
    names = list(METRICS[assignment])
    if assignment in PROBES:
        nb.cells.append(nbformat.v4.new_code_cell(PROBES[assignment]))
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\nprint('BENCH' + _json.dumps({k: globals().get(k) for k in %r}, default=float))" % names))
    with tempfile.TemporaryDirectory() as tmp:
        if submission != "reference":
            copy_files(assignment, spec, Path(tmp))
            for old in Path(tmp).iterdir():
                if old.suffix in CHECKPOINT_SUFFIXES:
                    old.unlink()
        start = time.perf_counter()
        # Weak baselines fail some of the notebook's own tests: run on past errors, and name the cells that raised.
        NotebookClient(nb, timeout=3600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": tmp}}).execute()
        wall = time.perf_counter() - start
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "a cell")
                    print(f"{grade_id} raised {out['ename']}: {out['evalue'].splitlines()[-1] if out['evalue'] else ''}")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for made in Path(tmp).iterdir():
                if made.is_file():
                    shutil.copy(made, keep / made.name)
                    print(f"kept {keep / made.name}")
    line = next(o.text for o in nb.cells[-1].outputs if o.get("name") == "stdout" and "BENCH" in o.text)
    return {**json.loads(line.split("BENCH", 1)[1]), "notebook_seconds": wall}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "overhead":
        from da6401.timing import main as overhead

        return overhead(argv[1:])
    if argv and argv[0] == "grade":
        from da6401.timing import grade_main

        return grade_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m da6401.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", choices=sorted(METRICS))
    parser.add_argument("--submission", default="reference", help="a sample submission to run instead")
    parser.add_argument("--keep", type=Path, help="copy the files the notebook writes (checkpoints) here")
    args = parser.parse_args(argv)
    result = run(args.assignment, args.submission, args.keep)
    metrics = {k: v for k, v in METRICS[args.assignment].items() if result.get(k) is not None}
    for key, label in metrics.items():
        print(f"{label}: {result[key]:.4f}")
    print(f"whole notebook: {result['notebook_seconds']:.1f} s")
    print(f"machine: {machine()}, Python {platform.python_version()}")
    figures = ", ".join(f"{label} {result[key]:.4g}" for key, label in metrics.items())
    command = f"python -m da6401.bench {args.assignment}" + (
        f" --submission {args.submission}" if args.submission != "reference" else "")
    print(f"| {args.assignment} ({args.submission}) | `{command}` | {machine()} "
          f"| {figures}; whole notebook {result['notebook_seconds']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
