"""Reference runs: execute an assignment's reference notebook and print its figures.

    python -m da6401.bench a1_mlp

The reference notebook is the released notebook with the source's solutions filled
in (what `python -m da6401.submissions assemble <a> reference` submits). It runs
top to bottom in a fresh kernel, as a student's "Restart & Run All" would; then
one extra cell prints the metrics the notebook computed. The output ends with a
row for README's reference-run table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from da6401.submissions import REPO, reference_notebook

# Variables each reference notebook leaves behind, printed by the benchmark.
METRICS = {
    "a1_mlp": {"test_acc": "MNIST test accuracy", "train_seconds": "training time (s)"},
}


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


def run(assignment: str) -> dict:
    """Execute the reference notebook of ``assignment``; return its metrics and the wall time."""
    (path,) = (REPO / "source" / assignment).glob("*.ipynb")
    nb = reference_notebook(REPO, assignment, path.name)
    names = list(METRICS[assignment])
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\nprint('BENCH' + _json.dumps({k: float(globals()[k]) for k in %r}))" % names))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
        wall = time.perf_counter() - start
    line = next(o.text for o in nb.cells[-1].outputs if o.get("name") == "stdout" and "BENCH" in o.text)
    return {**json.loads(line.split("BENCH", 1)[1]), "notebook_seconds": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m da6401.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", choices=sorted(METRICS))
    args = parser.parse_args(argv)
    result = run(args.assignment)
    for key, label in METRICS[args.assignment].items():
        print(f"{label}: {result[key]:.4f}")
    print(f"whole notebook: {result['notebook_seconds']:.1f} s")
    print(f"machine: {machine()}, Python {platform.python_version()}")
    figures = ", ".join(f"{label} {result[key]:.4g}" for key, label in METRICS[args.assignment].items())
    print(f"| {args.assignment} | `python -m da6401.bench {args.assignment}` | {machine()} "
          f"| {figures}; whole notebook {result['notebook_seconds']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
