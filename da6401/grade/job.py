"""One submission's grading job: packed by the driver, graded by :func:`run` wherever a worker runs.

A :class:`Job` carries everything grading one student needs, as bytes (so that it travels to a Dask worker on
another machine as well as to a thread here): the course's ``nbgrader_config.py``, ``source/<assignment>``, the
template gradebook (:func:`da6401.grade.record.template`) and ``submitted/<student>/<assignment>``. :func:`run`
unpacks it into a private course folder, runs ``nbgrader autograde <assignment> --student <student> --force``
there, exactly as an instructor would in the course, and sends back a :class:`Result`: what the job's gradebook
holds for the student (:func:`da6401.grade.record.read`) and the autograded folder, packed.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Job:
    course_id: str
    assignment: str
    student: str
    payload: bytes              # tar.gz of the private course (see the module's docstring)
    extension: float | None     # the student's extension in seconds, as the course's gradebook has it
    threads: int = 1            # NumPy's and torch's threads in the student's kernel


@dataclass
class Result:
    student: str
    ok: bool
    seconds: float
    reason: str = ""            # why it failed (nbgrader's error lines), for the instructor
    lost: bool = False          # the grading process was killed: nothing about the submission is known
    record: dict | None = None  # da6401.grade.record.read of the job's gradebook
    autograded: bytes = b""     # tar.gz of autograded/<student>/<assignment>


def pack(files: dict[str, Path]) -> bytes:
    """A tar.gz of ``{name in the archive: file or folder}`` (folders whole; symlinks are not followed)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, path in files.items():
            if path.exists():
                tar.add(path, arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Extract a :func:`pack` archive into ``folder`` (regular files and folders only, nothing outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def run(job: Job, in_process: bool = False) -> Result:
    """Grade ``job`` with nbgrader in a private course folder (the worker's side): in a new ``nbgrader``
    process, or (``in_process``, in a long-lived worker: :mod:`da6401.grade.worker`) with nbgrader's application
    in this process, as nbgrader's own test suite runs it, so that nbgrader, torch and the grader's checks are
    loaded once per worker, not once per submission."""
    from da6401.grade import record

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"da6401-grade-{job.assignment}-") as tmp:
        root = Path(tmp)
        unpack(job.payload, root)
        db_url = f"sqlite:///{root / 'gradebook.db'}"
        record.prepare(db_url, job.course_id, job.assignment, job.student, job.extension)
        args = ["autograde", job.assignment, "--student", job.student, "--force", "--log-level=ERROR",
                f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url={db_url}",
                f"--CourseDirectory.course_id={job.course_id}"]
        status, log = (_autograde_here if in_process else _autograde_subprocess)(args, root, job.threads)
        seconds = time.monotonic() - start
        if status < 0:
            return Result(job.student, False, seconds, f"the grading process was killed (signal {-status})",
                          lost=True)
        out = root / "autograded" / job.student / job.assignment
        ok = status == 0 and out.is_dir()
        return Result(job.student, ok, seconds, "" if ok else _reason(log, status), record=record.read(
            db_url, job.course_id, job.assignment, job.student), autograded=pack({".": out}) if out.is_dir() else b"")


def thread_environment(threads: int) -> dict[str, str]:
    """This process's environment with the venv first on PATH (nbgrader runs alembic) and NumPy's and torch's
    threads (the sandbox passes them on to the kernel) set to ``threads``."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _autograde_subprocess(args: list[str], root: Path, threads: int) -> tuple[int, str]:
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=root,
                          env=thread_environment(threads), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr


def _autograde_here(args: list[str], root: Path, threads: int) -> tuple[int, str]:
    """``nbgrader <args>`` in this process, from ``root`` (the environment's threads were set when the worker
    started); nbgrader's application is reset afterwards, as nbgrader's tests do between runs."""
    import logging
    from io import StringIO

    from jupyter_core.application import NoStart
    from nbgrader.apps.nbgraderapp import NbGraderApp

    cwd, path = os.getcwd(), list(sys.path)
    log = StringIO()
    os.chdir(root)
    app = NbGraderApp.instance()
    try:
        app.initialize(args)
        app.init_logging(logging.StreamHandler, [log], color=False, subapps=True)
        app.start()
        status = 0
    except NoStart:  # how a Jupyter application says its subcommand (autograde) has run
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # nbgrader itself failed: the submission is reported, the worker goes on
        log.write(f"ERROR {type(e).__name__}: {e}\n")
        status = 1
    finally:
        app.reset()
        os.chdir(cwd)
        sys.path[:] = path  # nbgrader puts the course folder first on sys.path
    return status, log.getvalue()


def _reason(log: str, status: int) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return " | ".join((errors or lines)[-3:])[:600] or f"nbgrader exited with status {status}"
