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
import socket
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
    host: str = ""


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


def run(job: Job) -> Result:
    """Grade ``job`` with nbgrader in a private course folder (the worker's side)."""
    from da6401.grade import record

    start = time.monotonic()
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix=f"da6401-grade-{job.assignment}-") as tmp:
        root = Path(tmp)
        unpack(job.payload, root)
        db_url = f"sqlite:///{root / 'gradebook.db'}"
        record.prepare(db_url, job.course_id, job.assignment, job.student, job.extension)
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs alembic
        env.update({name: str(job.threads) for name in THREAD_VARIABLES})
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        done = subprocess.run([str(bin_dir / "nbgrader"), "autograde", job.assignment, "--student", job.student,
                               "--force", "--log-level=ERROR", f"--CourseDirectory.root={root}",
                               f"--CourseDirectory.db_url={db_url}", f"--CourseDirectory.course_id={job.course_id}"],
                              cwd=root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        if done.returncode < 0:
            return Result(job.student, False, seconds, f"the grading process was killed (signal {-done.returncode})",
                          lost=True, host=host)
        out = root / "autograded" / job.student / job.assignment
        ok = done.returncode == 0 and out.is_dir()
        return Result(job.student, ok, seconds, "" if ok else _reason(done), record=record.read(
            db_url, job.course_id, job.assignment, job.student), autograded=pack({".": out}) if out.is_dir() else b"", host=host)


def _reason(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return " | ".join((errors or lines)[-3:])[:600] or f"nbgrader exited with status {done.returncode}"
