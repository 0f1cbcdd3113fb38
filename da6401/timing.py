"""Grading benchmarks: what the sandbox and the trusted grader cost (``overhead``).

    python -m da6401.bench overhead [--rounds 2] [--samples a1_mlp:reference,a2_cnn:reference,...]

Autogrades the same reference notebooks, one ``nbgrader autograde --student`` each, under three
configurations of the same course, interleaved round by round (so that a noisy machine slows all three alike):

- ``stock``: nbgrader's own ``Execute``, tests in the student's kernel (what the course did before);
- ``sandbox``: every kernel in the sandbox, tests still in the kernel (the grader's package and the test splits
  made visible to it, so that they can run there);
- ``trusted``: the course's configuration: sandbox, and tests in the trusted grader.

It prints each notebook's median seconds per configuration, the sandbox's cost (sandbox over stock) and the
channel's (trusted over sandbox), and a row for README.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from da6401.submissions import REPO, assemble, load_spec, notebook_of

DEFAULT_SAMPLES = ("a1_mlp:reference", "a2_cnn:reference", "a3_seq2seq:reference", "a4_generative:dcgan_reference",
                   "a4_generative:vit_reference")
STOCK = [("from nbgrader.preprocessors import (\n", "from nbgrader.preprocessors import (\n    Execute,\n"),
         ("    SandboxedExecute,\n", "    Execute,\n"), ("c.Autograde.pre_convert_hook", "# c.Autograde.pre_convert_hook")]
IN_KERNEL = f"""
c.SandboxedExecute.test_cells = "kernel"
c.Sandbox.student_package = ["__init__.py", "data", "student", "testcell.py", "wire.py", "text.py", "devices.py", "grader"]
c.Sandbox.withheld_splits = []
c.Sandbox.extra_ro_binds = [{str(REPO / "source" / "a4_generative" / "instructor")!r}]
"""


def config(kind: str) -> str:
    """The course's nbgrader_config.py as one of the three configurations."""
    text = (REPO / "nbgrader_config.py").read_text()
    if kind == "stock":
        for old, new in STOCK:
            assert old in text, f"cannot derive the stock configuration: {old!r} not in nbgrader_config.py"
            text = text.replace(old, new, 1)
    elif kind == "sandbox":
        text += IN_KERNEL
    return text


def course(root: Path, kind: str, samples: list[tuple[str, str]]) -> Path:
    path = root / kind
    path.mkdir(parents=True)
    (path / "nbgrader_config.py").write_text(config(kind))
    for folder in ("source", "release"):
        shutil.copytree(REPO / folder, path / folder)
    for assignment in sorted({a for a, _ in samples}):
        nbgrader(path, "generate_assignment", assignment, "--force")
        assemble(assignment, [n for a, n in samples if a == assignment], path)
    return path


def nbgrader(course_dir: Path, *args: str) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args, "--log-level=ERROR"], cwd=course_dir,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course_dir}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def overhead(samples: list[tuple[str, str]], rounds: int) -> dict:
    """{(assignment, sample): {kind: [seconds per round]}}."""
    kinds = ("stock", "sandbox", "trusted")
    times = {sample: {kind: [] for kind in kinds} for sample in samples}
    with tempfile.TemporaryDirectory(prefix="da6401-overhead-") as tmp:
        courses = {kind: course(Path(tmp), kind, samples) for kind in kinds}
        for r in range(rounds):
            for assignment, name in samples:
                for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                    seconds = nbgrader(courses[kind], "autograde", assignment, "--student", name, "--force")
                    times[(assignment, name)][kind].append(seconds)
                    print(f"round {r + 1} {assignment}/{name} {kind}: {seconds:.1f} s", flush=True)
    return times


def main(argv: list[str]) -> int:
    from da6401.bench import machine

    parser = argparse.ArgumentParser(prog="python -m da6401.bench overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", default=",".join(DEFAULT_SAMPLES),
                        help="assignment:sample pairs, comma-separated (default: the five reference notebooks)")
    args = parser.parse_args(argv)
    samples = [tuple(item.split(":", 1)) for item in args.samples.split(",")]
    for assignment, name in samples:
        notebook_of(REPO, assignment, load_spec(assignment, name))  # fail early on a typo
    times = overhead(samples, args.rounds)
    print(f"\n{'notebook':36s} {'stock':>8s} {'sandbox':>8s} {'trusted':>8s} {'sandbox cost':>13s} {'channel cost':>13s}")
    totals = {k: 0.0 for k in ("stock", "sandbox", "trusted")}
    for (assignment, name), by_kind in times.items():
        median = {k: statistics.median(v) for k, v in by_kind.items()}
        for k in totals:
            totals[k] += median[k]
        print(f"{assignment + '/' + name:36s} {median['stock']:8.1f} {median['sandbox']:8.1f} {median['trusted']:8.1f} "
              f"{median['sandbox'] / median['stock'] - 1:+13.1%} {median['trusted'] / median['sandbox'] - 1:+13.1%}")
    print(f"{'all':36s} {totals['stock']:8.1f} {totals['sandbox']:8.1f} {totals['trusted']:8.1f} "
          f"{totals['sandbox'] / totals['stock'] - 1:+13.1%} {totals['trusted'] / totals['sandbox'] - 1:+13.1%}")
    print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds, seconds per `nbgrader autograde --student`")
    return 0
