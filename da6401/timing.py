"""Grading benchmarks: what the sandbox and the trusted grader cost (``overhead``).

    python -m da6401.bench overhead [--rounds 2] [--class-size 1] [--samples a1_mlp:reference,a2_cnn:reference,...]

Autogrades the same reference notebooks under three configurations of the same course, interleaved round by
round (so that a noisy machine slows all three alike). Each sample is handed in by ``--class-size`` students and
graded by one ``nbgrader autograde --student 'SAMPLE__*'`` run, as a class is graded (one process for many
notebooks: what a process pays once, such as the grader loading torch, is shared); the time per notebook is the
run's time divided by the class size. The configurations:

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


def course(root: Path, kind: str, samples: list[tuple[str, str]], class_size: int = 1) -> Path:
    """A course in one configuration with each sample handed in by ``class_size`` students, SAMPLE__1 ..."""
    path = root / kind
    path.mkdir(parents=True)
    (path / "nbgrader_config.py").write_text(config(kind))
    for folder in ("source", "release"):
        shutil.copytree(REPO / folder, path / folder)
    for assignment in sorted({a for a, _ in samples}):
        nbgrader(path, "generate_assignment", assignment, "--force")
        names = [n for a, n in samples if a == assignment]
        assemble(assignment, names, path)
        for name in names:  # (two assignments may both have a sample called "reference")
            for k in range(1, class_size + 1):
                shutil.copytree(path / "submitted" / name / assignment, path / "submitted" / f"{name}__{k}" / assignment)
            shutil.rmtree(path / "submitted" / name / assignment)
    return path


def nbgrader(course_dir: Path, *args: str) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args, "--log-level=ERROR"], cwd=course_dir,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course_dir}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def overhead(samples: list[tuple[str, str]], rounds: int, class_size: int = 1) -> dict:
    """{(assignment, sample): {kind: [seconds per notebook, per round]}}."""
    kinds = ("stock", "sandbox", "trusted")
    times = {sample: {kind: [] for kind in kinds} for sample in samples}
    with tempfile.TemporaryDirectory(prefix="da6401-overhead-") as tmp:
        courses = {kind: course(Path(tmp), kind, samples, class_size) for kind in kinds}
        for r in range(rounds):
            for assignment, name in samples:
                for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                    seconds = nbgrader(courses[kind], "autograde", assignment, "--student", f"{name}__*",
                                       "--force") / class_size
                    times[(assignment, name)][kind].append(seconds)
                    print(f"round {r + 1} {assignment}/{name} {kind}: {seconds:.1f} s", flush=True)
    return times


def main(argv: list[str]) -> int:
    from da6401.bench import machine

    parser = argparse.ArgumentParser(prog="python -m da6401.bench overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--class-size", type=int, default=1,
                        help="students handing in each sample, graded in one autograde run (default 1)")
    parser.add_argument("--samples", default=",".join(DEFAULT_SAMPLES),
                        help="assignment:sample pairs, comma-separated (default: the five reference notebooks)")
    args = parser.parse_args(argv)
    samples = [tuple(item.split(":", 1)) for item in args.samples.split(",")]
    for assignment, name in samples:
        notebook_of(REPO, assignment, load_spec(assignment, name))  # fail early on a typo
    times = overhead(samples, args.rounds, args.class_size)
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
    print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds; seconds per notebook, each sample "
          f"handed in by {args.class_size} student(s) and graded in one `nbgrader autograde` run")
    return 0


# --- python -m da6401.bench grade: a class graded serially and by da6401.grade ----------------------------------
GRADE_SAMPLES = ("a1_mlp:reference", "a3_seq2seq:reference", "a4_generative:dcgan_reference")


def class_speedup(samples: list[tuple[str, str]], class_size: int, workers: int) -> dict:
    """{assignment: {"serial": s, "parallel": s, "notebooks": n}}: one course per way, each sample handed in by
    ``class_size`` students, graded by ``nbgrader autograde`` and by ``python -m da6401.grade autograde``."""
    times: dict = {}
    with tempfile.TemporaryDirectory(prefix="da6401-grade-bench-") as tmp:
        courses = {way: course(Path(tmp) / way, "trusted", samples, class_size) for way in ("serial", "parallel")}
        for assignment in sorted({a for a, _ in samples}):
            serial = nbgrader(courses["serial"], "autograde", assignment, "--force")
            start = time.perf_counter()
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            done = subprocess.run([sys.executable, "-m", "da6401.grade", "autograde", assignment, "--force",
                                   "--workers", str(workers)], cwd=courses["parallel"], env=env,
                                  capture_output=True, text=True)
            parallel = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"da6401.grade failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            n = class_size * sum(1 for a, _ in samples if a == assignment)
            times[assignment] = {"serial": serial, "parallel": parallel, "notebooks": n}
            print(f"{assignment}: {n} notebooks, serial {serial:.1f} s, da6401.grade {parallel:.1f} s", flush=True)
    return times


def grade_main(argv: list[str]) -> int:
    from da6401.bench import machine

    parser = argparse.ArgumentParser(prog="python -m da6401.bench grade",
                                     description="A class graded by `nbgrader autograde` and by `python -m "
                                                 "da6401.grade autograde` in one run: the ratio, and what a class of "
                                                 "200 would take.")
    parser.add_argument("--samples", default=",".join(GRADE_SAMPLES))
    parser.add_argument("--class-size", type=int, default=4, help="students handing in each sample")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    samples = [tuple(item.split(":", 1)) for item in args.samples.split(",")]
    times = class_speedup(samples, args.class_size, args.workers)
    serial = sum(t["serial"] for t in times.values())
    parallel = sum(t["parallel"] for t in times.values())
    notebooks = sum(t["notebooks"] for t in times.values())
    print(f"\nall: {notebooks} notebooks, serial {serial:.1f} s, da6401.grade ({args.workers} workers) {parallel:.1f} s: "
          f"{serial / parallel:.2f}x")
    per = parallel / notebooks
    print(f"a class of 200 with five notebooks each at {per:.1f} s per notebook: {200 * 5 * per / 3600:.2f} h "
          f"(these samples' mix; machine: {machine()})")
    return 0
