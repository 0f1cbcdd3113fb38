"""Run one test cell in the grader, against the notebook in the sandboxed kernel, and write its outputs.

:class:`TrustedGrader` belongs to one notebook's execution (see
:class:`~da6401.nbgrader_ext.execute.SandboxedExecute`). For each test cell it takes the cell's source from the
gradebook, never from the submitted notebook (a student can edit the notebook's copy, not the gradebook's), runs
it with :func:`da6401.testcell.run_cell` in a :class:`~da6401.testcell.TestNamespace` of the grader's trusted
names (:mod:`da6401.grader.environment`) and the notebook's (:mod:`da6401.grader.channel`), and writes the
outputs nbgrader scores: the report on stdout; an error when the cell earns nothing; the points as the cell's
result when it gives partial credit. Only the grader writes them.
"""
from __future__ import annotations

import importlib
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from nbformat.v4 import new_output

from da6401.grader.channel import AGENT_SETUP, Channel, KernelGone, StudentError
from da6401.grader.context import grading
from da6401.grader.environment import environment
from da6401.testcell import TestNamespace, report, run_cell, summary

FAILED_NAME = "TestsFailed"


@contextmanager
def _alarm(deadline: float):
    """Within the block, SIGALRM at ``deadline`` (``time.monotonic()``) raises KernelGone: the notebook's time is
    up even if no request to the kernel is pending (a test spinning on data the notebook returned)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise KernelGone("time limit reached while the grader ran this cell's tests")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Imported by every notebook's tests (the trusted names of da6401.grader.environment, torch's optimisers for the
# oracles), and whatever else the test cells import from the grader or torch.
ALWAYS = ("da6401.grader.environment", "torch", "torch.nn", "torch.optim", "torch.utils.data", "da6401.grader.checks")
_IMPORT = re.compile(r"^\s*(?:from|import)\s+((?:da6401\.grader|torch)(?:\.\w+)*)", re.M)
_warmed: set[str] = set()


def warm_up(sources: dict[str, tuple[str, float]]) -> threading.Thread | None:
    """Import what the test cells ``sources`` will need in the grader, in a background thread, while the
    sandboxed kernel starts and runs the student's first cells on the other core: the grader's imports (torch
    alone takes seconds) then cost the notebook no waiting. Each module once per process; an import that fails
    is left for the test cell that needs it to report."""
    wanted = set(ALWAYS)
    for source, _ in sources.values():
        wanted.update(_IMPORT.findall(source))
    todo = sorted(wanted - _warmed)
    if not todo:
        return None
    _warmed.update(todo)

    def work():
        for name in todo:
            try:
                importlib.import_module(name)
            except Exception:
                pass

    thread = threading.Thread(target=work, name="da6401-grader-warm-up", daemon=True)
    thread.start()
    return thread


class TrustedGrader:
    """The grader's side of one notebook's kernel.

    Args:
        kc: the kernel client of the notebook's execution.
        alive: a function telling whether the kernel still runs.
        notebook: the notebook's name (without .ipynb), which selects its test environment.
        submission: the submission's folder (the files a test reads).
        sources: {grade_id: (source, points)} of the notebook's test cells, from the gradebook.
        deadline: ``time.monotonic()`` by which the notebook must be done.
    """

    def __init__(self, kc, alive, notebook: str, submission: Path, sources: dict[str, tuple[str, float]],
                 deadline: float):
        self.kc, self.alive, self.notebook, self.submission = kc, alive, notebook, Path(submission)
        self.sources, self.deadline = sources, deadline
        self.channel: Channel | None = None
        self.seconds: dict[str, float] = {}

    def connect(self, execute) -> None:
        """Install the agent in the kernel (``execute(code)`` runs code there) and open the channel."""
        execute(AGENT_SETUP)
        self.channel = Channel(self.kc, timeout=max(1.0, self.deadline - time.monotonic()), alive=self.alive,
                               deadline=self.deadline)

    def run(self, grade_id: str) -> list:
        """The outputs of test cell ``grade_id``.

        Raises:
            KernelGone: the kernel died or ran out of time while the tests ran (a fault for the executor).
        """
        source, max_points = self.sources[grade_id]
        channel = self.channel
        channel.reset()
        channel.timeout = max(1.0, self.deadline - time.monotonic())
        channel.printed.clear()
        namespace = TestNamespace(environment(self.notebook, channel), channel.get)
        start = time.monotonic()
        with grading(self.submission), _alarm(self.deadline):
            result = run_cell(source, namespace, filename=f"<test cell {grade_id}>", student_error=StudentError,
                              fatal=(KernelGone,))
        self.seconds[grade_id] = time.monotonic() - start
        outputs = [new_output("stream", name="stdout", text=report(result, max_points))]
        score = result.score(max_points)
        if result.partial() and 0 < score < max_points:
            outputs.append(new_output("execute_result", data={"text/plain": f"{score:g}"}, execution_count=None))
        elif score < max_points:
            message = summary(result)
            outputs.append(new_output("error", ename=FAILED_NAME, evalue=message, traceback=[f"{FAILED_NAME}: {message}"]))
        return outputs
