"""Autograde preprocessor: execute each submission in its own sandbox, within limits, and never lose a grade.

``SandboxedExecute`` replaces nbgrader's ``Execute`` in ``c.Autograde.autograde_preprocessors``. For every
notebook it opens a :class:`~da6401.sandbox.bwrap.Session` (working copy, cgroup, private sockets), starts the
kernel inside it and runs the cells in order, with

- a wall-clock budget for the whole notebook (each cell's timeout is the smaller of ``Execute.timeout`` and what
  is left of the budget), and caps on the output kept per cell and per notebook;
- **faults** instead of crashes: when a limit is hit, the kernel dies or exits, or will not start, the cell where
  it happened gets an error output saying so ("memory limit of 4 GiB reached in this cell"), every test cell
  after it gets one saying why it was not run, and so scores 0; autograde then goes on with the next student.

Test cells run where :attr:`test_cells` says: in the kernel (``"kernel"``, the ``%%tests`` magic decides), or in
the trusted grader (``"grader"``, see :mod:`da6401.grader`), where the student's code cannot reach the verdict.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import Execute
from traitlets import Enum

from da6401.grader.channel import KernelGone
from da6401.sandbox.bwrap import Sandbox
from da6401.sandbox.kernel import SandboxedKernelManager
from da6401.sandbox.limits import GiB, MiB, SandboxLimits

FAULT_NAME = "SandboxFault"     # ename of the error output in the cell where a fault happened
NOT_RUN_NAME = "NotGraded"      # ename of the error output of each test cell that could not run after it


@dataclass(frozen=True)
class Fault:
    """Why the notebook stopped, and where."""

    reason: str   # "memory limit of 4 GiB reached"
    cell: str     # the cell's grade_id, or "cell 12"

    def here(self) -> str:
        return (f"{self.reason} in this cell; the kernel was stopped, so the test cells after this one "
                "were not run and score 0")

    def later(self) -> str:
        return f"not run: {self.reason} in cell `{self.cell}`, so this test cell scores 0"


def cell_name(cell, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"


def is_test_cell(cell) -> bool:
    """An autograded test cell: a graded code cell that is not a solution."""
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


def error_output(ename: str, message: str):
    return new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


def _size(content: dict) -> int:
    if "text" in content:
        return len(content["text"])
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in content.get("data", {}).values())


def gradebook_tests(resources) -> dict[str, tuple[str, float]]:
    """{grade_id: (source, points)} of the notebook's autograded test cells, as the gradebook has them."""
    info = (resources or {}).get("nbgrader", {})
    if not info.get("db_url"):
        return {}
    with Gradebook(info["db_url"]) as gb:
        try:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
        except MissingEntry:
            return {}
        solutions = {c.name for c in notebook.solution_cells}
        sources = {c.name: c.source for c in notebook.source_cells}
        return {c.name: (sources[c.name], float(c.max_score)) for c in notebook.grade_cells
                if c.cell_type == "code" and c.name not in solutions and c.name in sources}


def restore_metadata(nb, tests: dict[str, tuple[str, float]]) -> None:
    """Undo a student's edits of nbgrader metadata that would change how a cell is graded: a known test cell is
    a graded, non-solution cell worth its gradebook points; nbgrader metadata without a known id (made up by the
    student, or an id nbgrader dropped) is removed, so the cell runs as an ordinary cell."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id")
        if grade_id in tests:
            meta.update(grade=True, solution=False, points=tests[grade_id][1])
        elif grade_id is None:
            del cell.metadata["nbgrader"]


class SandboxedExecute(Execute):
    """nbgrader's ``Execute``, with each kernel in a bubblewrap sandbox and limits per notebook."""

    test_cells = Enum(["grader", "kernel"], "grader",
                      help="Where test cells run: in the trusted grader (their verdict is the grader's), or in the "
                           "student's kernel (the %%tests magic decides, as in the student's own Jupyter).").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        info = (resources or {}).get("nbgrader", {})
        assignment = info.get("assignment") or ""
        self.notebook_name = info.get("notebook") or ""
        self.tests = gradebook_tests(resources) if self.test_cells == "grader" else {}
        if self.tests:
            from da6401.grader.cell import warm_up

            warm_up(self.tests)
        restore_metadata(nb, self.tests)
        self.grader = None
        self.limits = SandboxLimits(parent=self).for_assignment(assignment)
        submission = Path((resources or {}).get("metadata", {}).get("path") or ".")
        sandbox = Sandbox(parent=self)
        with sandbox.session(submission, assignment, self.limits, log=self.log) as session:
            self.session = session
            self.fault: Fault | None = None
            self._notebook_bytes = self._cell_bytes = 0
            self._cut = False
            self._deadline = time.monotonic() + self.limits.notebook_seconds
            # What nbconvert's ExecutePreprocessor.preprocess does, with a sandboxed kernel manager.
            NotebookClient.__init__(self, nb, None)
            if not self.kernel_name:
                self.kernel_name = nb.metadata.get("kernelspec", {}).get("name") or "python3"
            self.km = SandboxedKernelManager(session=session, kernel_name=self.kernel_name, config=self.config)
            self.owns_km = True
            self.reset_execution_trackers()
            self._check_assign_resources(resources)
            try:
                # The kernel's own stdout and stderr (not its notebook output, which goes over the sockets) are
                # dropped: a student's raw writes to fd 1 or 2 must not flood the grader's terminal and log.
                with self.setup_kernel(cwd=session.workdir if sandbox.run_unsandboxed else str(session.private),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                    session.seal()
                    info_msg = self.wait_for_reply(self.kc.kernel_info())
                    if info_msg:
                        self.nb.metadata["language_info"] = info_msg["content"].get("language_info", {})
                    self.on_kernel_ready()
                    for index, cell in enumerate(self.nb.cells):
                        self.run_cell(cell, index)
            except (RuntimeError, TimeoutError, DeadKernelError) as e:  # the kernel never came up, or died at once
                if self.fault is None:
                    self.fault = Fault(self._diagnose(f"the kernel did not start ({type(e).__name__}: {e})"),
                                       "the start of the notebook")
                    self.log.error("%s: %s", submission, self.fault.reason)
                    for index, cell in enumerate(self.nb.cells):
                        if is_test_cell(cell):
                            cell.outputs = [error_output(NOT_RUN_NAME, self.fault.later())]
        return self.nb, self.resources

    def on_kernel_ready(self) -> None:
        """Called once the kernel answers, before the first cell: the trusted grader connects here."""
        if not self.tests:
            return
        from da6401.grader.cell import TrustedGrader

        alive = lambda: run_sync(self.km.is_alive)()  # noqa: E731
        self.grader = TrustedGrader(self.kc, alive, self.notebook_name, self.session.submission, self.tests,
                                    self._deadline)

        def execute(code: str) -> None:
            reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
            if reply is None or reply["content"].get("status") != "ok":
                raise RuntimeError("the grader's agent could not be installed in the kernel")

        self.grader.connect(execute)

    # --- cells ---------------------------------------------------------------------------------------
    def run_cell(self, cell, index: int) -> None:
        if cell.cell_type != "code" or not cell.source.strip():
            return
        if self.fault is not None:
            cell.outputs = [error_output(NOT_RUN_NAME, self.fault.later())] if is_test_cell(cell) else []
            return
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return self._stop(cell, index, f"time limit of {self.limits.notebook_seconds:g} s for the notebook reached")
        configured = self.timeout
        self.timeout = int(max(1, min(configured or remaining, remaining)))
        self._cell_bytes, self._cut = 0, False
        oom_before = self.session.cgroup.oom_kills() if self.session.cgroup else 0
        try:
            self.execute_cell_here(cell, index)
        except DeadKernelError:
            return self._stop(cell, index, self._diagnose("the kernel died"), kill=False)
        except KernelGone as e:  # while the grader ran this cell's tests
            reason = (f"time limit of {self.limits.notebook_seconds:g} s for the notebook reached"
                      if time.monotonic() >= self._deadline else self._diagnose(str(e)))
            return self._stop(cell, index, reason)
        except CellTimeoutError:
            reason = (f"time limit of {self.limits.notebook_seconds:g} s for the notebook reached"
                      if time.monotonic() >= self._deadline else
                      f"the cell ran past its {self.timeout} s timeout and did not stop when interrupted")
            return self._stop(cell, index, reason)
        except Exception as e:  # anything else the kernel's messages made nbclient raise: the kernel's fault
            self.log.error("%s: cell %s", self.session.submission, cell_name(cell, index), exc_info=True)
            detail = (str(e).splitlines() or [""])[0][:200]
            return self._stop(cell, index, f"the kernel broke the Jupyter protocol ({type(e).__name__}: {detail})")
        finally:
            self.timeout = configured
        group = self.session.cgroup
        if group is not None and group.oom_kills() > oom_before:
            return self._stop(cell, index, f"memory limit of {self.limits.memory_bytes / GiB:g} GiB reached")
        if group is not None and group.hit_process_limit():
            return self._stop(cell, index, f"process limit of {self.limits.processes} reached")
        if time.monotonic() >= self._deadline:
            return self._stop(cell, index, f"time limit of {self.limits.notebook_seconds:g} s for the notebook reached")

    def execute_cell_here(self, cell, index: int) -> None:
        """Execute one cell: a test cell in the trusted grader, any other cell in the kernel."""
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if self.grader is not None and grade_id in self.tests:
            before = self.grader.channel.requests
            cell.outputs = self.grader.run(grade_id)
            cell.execution_count = None
            self.log.debug("%s: test cell %s graded in %.1f s, %d requests to the kernel", self.session.submission,
                           grade_id, self.grader.seconds.get(grade_id, 0.0), self.grader.channel.requests - before)
        else:
            start = time.monotonic()
            self.execute_cell(cell, index, store_history=True)
            self.log.debug("%s: cell %s ran in the kernel in %.1f s", self.session.submission, cell_name(cell, index),
                           time.monotonic() - start)

    def _stop(self, cell, index: int, reason: str, kill: bool = True) -> None:
        self.fault = Fault(reason, cell_name(cell, index))
        self.log.warning("%s: %s in cell %s", self.session.submission, reason, self.fault.cell)
        cell.outputs = list(cell.get("outputs", [])) + [error_output(FAULT_NAME, self.fault.here())]
        if kill and self.km is not None:
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # already gone
                pass

    def _diagnose(self, default: str) -> str:
        """Why the kernel is gone: a limit, a signal, or its own exit."""
        group = self.session.cgroup
        if group is not None and group.oom_kills() > 0:
            return f"memory limit of {self.limits.memory_bytes / GiB:g} GiB reached"
        if group is not None and group.hit_process_limit():
            return f"process limit of {self.limits.processes} reached"
        status = getattr(self.km, "exit_status", None) if self.km is not None else None
        if status is None:
            return default
        if status > 128:
            try:
                name = signal.Signals(status - 128).name
            except ValueError:
                name = f"signal {status - 128}"
            return f"the kernel was killed ({name})"
        return f"the kernel exited (exit status {status}): the notebook ended its own kernel"

    # --- output caps ---------------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        size = _size(msg.get("content", {}))
        room = min(self.limits.output_bytes_per_cell - self._cell_bytes,
                   self.limits.output_bytes_per_notebook - self._notebook_bytes)
        if size > room:  # keep what fits of a stream, then say once that output was cut
            kept = None
            if msg.get("msg_type") == "stream" and room > 0:
                msg["content"]["text"] = msg["content"]["text"][:room]
                self._cell_bytes += room
                self._notebook_bytes += room
                kept = super().output(outs, msg, display_id, cell_index)
            if not self._cut:
                self._cut = True
                # display data, not a stream: nbgrader's LimitOutput drops stream outputs past its line cap
                outs.append(new_output("display_data", data={"text/plain": (
                    f"[output cut: this notebook may keep {self.limits.output_bytes_per_cell / MiB:g} MiB of "
                    f"output per cell and {self.limits.output_bytes_per_notebook / MiB:g} MiB in all]")}))
            return kept
        self._cell_bytes += size
        self._notebook_bytes += size
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):
        if _size(msg.get("content", {})) > self.limits.output_bytes_per_cell:
            return  # an update may not grow an output past the cap
        super()._update_display_id(display_id, msg)
