"""Shared fixtures: a temporary course directory run with the real nbgrader configuration."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from da6401.scores import cell_scores
from da6401.submissions import assemble

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the course venv running pytest
MIRROR = REPO.parent / "shared" / "data"


def course_env(threads: int | None = None) -> dict[str, str]:
    """Environment for nbgrader subprocesses: the venv first on PATH (nbgrader calls alembic), real data;
    with ``threads``, NumPy's and torch's thread pools limited to that many."""
    env = dict(os.environ)
    if threads:
        env.update({var: str(threads) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads sleep instead of spinning when cores are shared
    if "DA6401_DATA_MIRROR" not in env and MIRROR.is_dir():
        env["DA6401_DATA_MIRROR"] = str(MIRROR)
    return env


def nbgrader(course: Path, *args: str, timeout: int = 3600, threads: int | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course`` (its kernels limited to ``threads`` threads, if given); fail the test
    with nbgrader's output if it exits non-zero."""
    done = subprocess.run([str(BIN / "nbgrader"), *args, "--log-level=WARN"], cwd=course, env=course_env(threads),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


# The test courses' extra configuration: tighter limits for A1, whose attack samples hit them on purpose (an
# honest A1 notebook takes about 10 s under autograde, 30 s with the other core busy).
TEST_LIMITS = """
c.SandboxLimits.per_assignment = {"a1_mlp": {"notebook_seconds": 120, "memory_bytes": 3 * 2**30}}
"""


def make_course(path: Path, config: str | None = None) -> Path:
    """A course directory at ``path`` with this repo's config (or ``config``), source/ and committed release/."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "nbgrader_config.py").write_text(config or (REPO / "nbgrader_config.py").read_text() + TEST_LIMITS)
    for folder in ("source", "release"):
        shutil.copytree(REPO / folder, path / folder, ignore=shutil.ignore_patterns("README.md"))
    return path


def tree_digest(*roots: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every file under ``roots`` (names in ``skip`` left out), to prove nothing changed."""
    import hashlib

    digests = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not any(part in skip for part in path.parts):
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


class Listener:
    """TCP listeners on 127.0.0.1 ports that attack submissions try to reach; records every connection."""

    PORTS = range(47000, 47012)

    def __init__(self):
        import socket
        import threading

        self.connections: list[tuple[int, bytes]] = []
        self.sockets = []
        for port in self.PORTS:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            sock.listen(16)
            sock.settimeout(0.5)
            self.sockets.append(sock)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        import socket

        while self.running:
            for sock in self.sockets:
                try:
                    conn, _ = sock.accept()
                except (socket.timeout, OSError):
                    continue
                conn.settimeout(1)
                try:
                    data = conn.recv(1024)
                except OSError:
                    data = b""
                self.connections.append((sock.getsockname()[1], data))
                conn.close()

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def processes_with(marker: str) -> list[str]:
    """Command lines of the processes on this machine that contain ``marker`` (leftovers of a submission)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and str(os.getpid()) != proc.name and "processes_with" not in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture(scope="session")
def needs_data():
    """Skip unless the real MNIST, CIFAR-10 and Multi30k are in the data root or reachable through the mirror (in CI: fail)."""
    from da6401.data import DatasetMissingError, fetch

    os.environ.update({k: v for k, v in course_env().items() if k == "DA6401_DATA_MIRROR"})
    try:
        for dataset in ("mnist", "cifar10", "multi30k"):
            fetch(dataset)
    except DatasetMissingError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the data mirror beside the checkout: {e}")
        pytest.skip(f"real data unavailable: {e}")


@pytest.fixture(scope="session")
def autograded(tmp_path_factory, needs_data):
    """Per assignment, one temporary course with every sample submission autograded and its feedback.

    The first request starts every assignment's grading in the background, two at a time, each kernel on one
    thread: one autograde per core. (Two autogrades whose kernels each wanted both cores were far slower than one
    after the other: OpenBLAS and torch threads fought over the cores, and an A1 notebook took minutes.)
    The assignments with the most sample submissions start first, so the two workers finish at about the same
    time (in whatever order a set gave, A1's 25 notebooks sometimes started last and added 8 minutes).
    Each request waits for its own assignment.
    """
    from concurrent.futures import ThreadPoolExecutor

    from da6401.submissions import SPECS, spec_names

    pool = ThreadPoolExecutor(max_workers=2)
    jobs = {}

    def grade(assignment: str, course: Path):
        nbgrader(course, "generate_assignment", assignment, "--force")  # records cells and points in the gradebook
        assemble(assignment, None, course)
        watched = (course / "source", course / "release", course / "nbgrader_config.py", REPO / "da6401")
        before = tree_digest(*[p for p in watched if p.is_dir()]), (course / "nbgrader_config.py").read_bytes()
        submitted_before = tree_digest(course / "submitted")
        listener = Listener() if assignment == "a1_mlp" else None
        try:
            nbgrader(course, "autograde", assignment, "--force", threads=1)
        finally:
            if listener is not None:
                listener.close()
        after = tree_digest(*[p for p in watched if p.is_dir()]), (course / "nbgrader_config.py").read_bytes()
        nbgrader(course, "generate_feedback", assignment, "--force")
        course_record = {"unchanged": before == after, "changed": sorted(set(before[0].items()) ^ set(after[0].items())),
                         "submitted_unchanged": submitted_before == tree_digest(course / "submitted"),
                         "connections": listener.connections if listener else []}
        (course / "watch.json").write_text(__import__("json").dumps(course_record, default=str))
        return course, cell_scores(course, assignment)

    def result(assignment: str):
        if not jobs:
            for name in sorted((a.name for a in SPECS.iterdir() if a.is_dir()), key=lambda a: (-len(spec_names(a)), a)):
                jobs[name] = pool.submit(grade, name, make_course(tmp_path_factory.mktemp(name)))
        return jobs[assignment].result()

    yield result
    pool.shutdown(cancel_futures=True)
