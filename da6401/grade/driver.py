"""A class run: which submissions to grade, where (local workers or a Dask cluster), progress and the summary.

The driver packs one :class:`~da6401.grade.job.Job` per submission, hands them to the workers, and as each
:class:`~da6401.grade.job.Result` arrives writes it into the course's gradebook and moves its autograded folder
into place (in that order: the folder is what says "graded", here as for ``nbgrader autograde``). A job whose
worker process died (it is replaced), or whose Dask worker was lost, is sent once more; then it is reported.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from da6401.grade import record, worker
from da6401.grade.job import Job, Result, pack, run, thread_environment, unpack

ATTEMPTS = 2  # a job whose worker was lost is graded once more, then reported


@dataclass
class Course:
    """What the driver needs of the course's nbgrader configuration."""
    root: Path
    db_url: str
    course_id: str
    config: Path

    @classmethod
    def load(cls, nbgrader_args: list[str]) -> "Course":
        """The course as ``nbgrader autograde`` sees it from the current folder with these extra arguments
        (``--CourseDirectory.db_url=...`` and the like); nbgrader's own application reads the configuration."""
        from nbgrader.apps import AutogradeApp
        from nbgrader.coursedir import CourseDirectory

        app = AutogradeApp()
        app.initialize(["--log-level=ERROR", *nbgrader_args])
        coursedir: CourseDirectory = app.coursedir
        if coursedir.directory_structure != CourseDirectory.directory_structure.default_value:
            raise SystemExit("da6401.grade supports nbgrader's default directory_structure only")
        root = Path(coursedir.root or os.getcwd()).resolve()
        return cls(root, coursedir.db_url, coursedir.course_id, root / "nbgrader_config.py")

    def submitted(self, assignment: str) -> dict[str, Path]:
        return {p.parent.name: p for p in sorted((self.root / "submitted").glob(f"*/{assignment}")) if p.is_dir()}

    def autograded(self, assignment: str, student: str) -> Path:
        return self.root / "autograded" / student / assignment


@dataclass
class Summary:
    graded: list[Result] = field(default_factory=list)
    failed: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self, slowest: int = 5) -> list[str]:
        out = [f"graded {len(self.graded)}, failed {len(self.failed)}, skipped {len(self.skipped)} "
               f"(already autograded; --force regrades them) in {self.seconds:.0f} s"]
        done = sorted(self.graded + self.failed, key=lambda r: -r.seconds)[:slowest]
        if done:
            out.append("slowest: " + ", ".join(f"{r.student} {r.seconds:.0f} s" for r in done))
        out += [f"FAILED {r.student}: {r.reason}" for r in self.failed]
        return out


def plan(course: Course, assignment: str, student: str = "*", force: bool = False) -> tuple[list[str], list[str]]:
    """(students to grade, students skipped because their autograded folder exists), nbgrader's way."""
    students = [s for s in course.submitted(assignment) if fnmatch.fnmatchcase(s, student)]
    skipped = [s for s in students if not force and course.autograded(assignment, s).is_dir()]
    return [s for s in students if s not in skipped], skipped


def jobs(course: Course, assignment: str, students: list[str], threads: int, workdir: Path):
    """One Job per student, packed lazily (a class's submissions need not all be in memory at once)."""
    template = workdir / "gradebook.db"
    record.template(course.db_url, course.course_id, template)
    for student in students:
        payload = pack({"nbgrader_config.py": course.config, "gradebook.db": template,
                        f"source/{assignment}": course.root / "source" / assignment,
                        f"submitted/{student}/{assignment}": course.root / "submitted" / student / assignment})
        yield Job(course.course_id, assignment, student, payload,
                  record.extension(course.db_url, course.course_id, assignment, student), threads)


def install(course: Course, assignment: str, result: Result) -> None:
    """Write one result into the course: the gradebook first, then the autograded folder (atomically)."""
    if result.record is not None:
        record.write(course.db_url, course.course_id, assignment, result.student, result.record)
    dest = course.autograded(assignment, result.student)
    if result.autograded:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{assignment}.partial-", dir=dest.parent))
        unpack(result.autograded, partial)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(partial, dest)
    elif dest.exists():  # nbgrader removes the autograded folder of a submission it could not grade
        shutil.rmtree(dest)


class LocalWorkers:
    """``workers`` long-lived worker processes on this machine (:mod:`da6401.grade.worker`), one job each at a
    time; a worker that dies is replaced, and its job comes back as lost."""

    def __init__(self, workers: int, threads: int):
        self.slots = workers
        self.env = thread_environment(threads)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="da6401-grade")
        self.local = threading.local()
        self.processes: list[subprocess.Popen] = []

    def _process(self) -> subprocess.Popen:
        proc = getattr(self.local, "process", None)
        if proc is None or proc.poll() is not None:
            proc = subprocess.Popen([sys.executable, "-m", "da6401.grade.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env)
            self.local.process = proc
            self.processes.append(proc)
        return proc

    def _run(self, job: Job) -> Result:
        proc = self._process()
        try:
            worker.send(proc.stdin, job)
            result = worker.receive(proc.stdout)
        except OSError:
            result = None
        if result is None:
            status = proc.poll()
            if status is None:
                proc.kill()
                status = proc.wait()
            return Result(job.student, False, 0.0, f"the grading process was killed (signal {-status})"
                          if status < 0 else f"the grading process exited ({status})", lost=True)
        return result

    def submit(self, job: Job):
        return self.pool.submit(self._run, job)

    def first_done(self, futures) -> set:
        return wait(futures, return_when=FIRST_COMPLETED).done

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in self.processes:
            if proc.poll() is None:
                proc.stdin.close()  # the worker ends after its job
        for proc in self.processes:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


class DaskWorkers:
    """Jobs on a Dask distributed cluster (``dask scheduler`` and ``dask worker`` processes, dask-jobqueue ...)."""

    def __init__(self, address: str):
        from distributed import Client

        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise SystemExit(f"no Dask scheduler answers at {address} ({e}); start one with `dask scheduler`") from None
        self.slots = max(1, sum(self.client.nthreads().values()))

    def submit(self, job: Job):
        return self.client.submit(run, job, pure=False, key=f"grade-{job.assignment}-{job.student}-{time.time_ns()}")

    def first_done(self, futures) -> set:
        from distributed import wait as dask_wait

        return set(dask_wait(futures, return_when="FIRST_COMPLETED").done)

    def close(self):
        self.client.close()


def autograde(course: Course, assignment: str, student: str = "*", force: bool = False, workers: int | None = None,
              scheduler: str | None = None, threads: int | None = None, progress: bool | None = None) -> Summary:
    """Grade the submissions of ``assignment`` that ``nbgrader autograde`` would, on ``workers`` local processes
    (default: one per core) or on the Dask cluster at ``scheduler``; return the summary."""
    from tqdm import tqdm

    start = time.monotonic()
    summary = Summary()
    todo, summary.skipped = plan(course, assignment, student, force)
    cores = os.cpu_count() or 1
    workers = workers or cores
    threads = threads or (max(1, cores // workers) if scheduler is None else 1)
    pool = DaskWorkers(scheduler) if scheduler else LocalWorkers(workers, threads)
    bar = tqdm(total=len(todo), desc=f"autograde {assignment}", unit="submission", disable=True if progress is False else None,
               file=sys.stderr, dynamic_ncols=True)
    attempts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="da6401-grade-") as tmp:
        queue = jobs(course, assignment, todo, threads, Path(tmp))
        pending: dict = {}
        try:
            while True:
                while len(pending) < 2 * pool.slots:  # a few jobs in hand per worker, not the whole class in memory
                    job = next(queue, None)
                    if job is None:
                        break
                    pending[pool.submit(job)] = job
                    attempts[job.student] = 1
                if not pending:
                    break
                for future in pool.first_done(list(pending)):
                    job = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as e:  # a Dask worker lost mid-job (KilledWorker), a job that could not run
                        result = Result(job.student, False, 0.0, f"{type(e).__name__}: {e}", lost=True)
                    if result.lost and attempts[job.student] < ATTEMPTS:
                        attempts[job.student] += 1
                        bar.write(f"{job.student}: {result.reason}; grading it again", file=sys.stderr)
                        pending[pool.submit(job)] = job
                        continue
                    install(course, assignment, result)
                    (summary.graded if result.ok else summary.failed).append(result)
                    if not result.ok:
                        bar.write(f"FAILED {result.student}: {result.reason}", file=sys.stderr)
                    bar.update(1)
        finally:
            bar.close()
            pool.close()
    summary.seconds = time.monotonic() - start
    return summary
