"""Resource limits for one sandboxed kernel: what they are, and how Linux enforces them.

Memory and the number of processes are enforced by a cgroup (v1: the ``memory`` and ``pids`` controllers,
one child group per kernel, created under the grader's own group), which counts every process and thread the
kernel starts, however it was started. Where no cgroup can be created (no cgroup v1 hierarchy, or no permission),
the same limits fall back to per-process rlimits (``RLIMIT_AS``, ``RLIMIT_NPROC``), which are weaker; the
sandbox says so in the log. File size (``RLIMIT_FSIZE``) is always an rlimit. Wall-clock time and output volume
are enforced by the executing preprocessor, not here.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

from traitlets import Dict, Float, Integer
from traitlets.config import Configurable

GiB = 1 << 30
MiB = 1 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """The limits of one notebook's kernel. Sizes in bytes, times in seconds."""

    notebook_seconds: float = 1800.0     # wall clock for the whole notebook, every cell together
    memory_bytes: int = 4 * GiB          # resident memory of the kernel and everything it starts (tmpfs included)
    processes: int = 256                 # processes and threads at once
    file_bytes: int = 1 * GiB            # largest file the kernel may write
    scratch_bytes: int = 2 * GiB         # size of each private tmpfs (home with the working copy, /tmp)
    output_bytes_per_cell: int = 1 * MiB  # outputs kept per cell; the rest is cut with a line saying so
    output_bytes_per_notebook: int = 8 * MiB

    def describe(self) -> str:
        """One line for logs and feedback."""
        return (f"{self.notebook_seconds:g} s per notebook, {self.memory_bytes / GiB:g} GiB memory, "
                f"{self.processes} processes, {self.file_bytes / MiB:g} MiB per file, "
                f"{self.output_bytes_per_cell / MiB:g} MiB output per cell and "
                f"{self.output_bytes_per_notebook / MiB:g} MiB per notebook")


class SandboxLimits(Configurable):
    """Limits for sandboxed notebooks, with per-assignment overrides, set in ``nbgrader_config.py``::

        c.SandboxLimits.memory_bytes = 4 * 2**30
        c.SandboxLimits.per_assignment = {"a2_cnn": {"notebook_seconds": 1200}}
    """

    notebook_seconds = Float(Limits.notebook_seconds, help="Wall-clock seconds per notebook, all cells together.").tag(config=True)
    memory_bytes = Integer(Limits.memory_bytes, help="Memory of the kernel and all it starts, in bytes.").tag(config=True)
    processes = Integer(Limits.processes, help="Processes and threads the kernel may run at once.").tag(config=True)
    file_bytes = Integer(Limits.file_bytes, help="Largest file the kernel may write, in bytes.").tag(config=True)
    scratch_bytes = Integer(Limits.scratch_bytes, help="Size of the kernel's private home and /tmp, in bytes each.").tag(config=True)
    output_bytes_per_cell = Integer(Limits.output_bytes_per_cell, help="Output kept per cell, in bytes.").tag(config=True)
    output_bytes_per_notebook = Integer(Limits.output_bytes_per_notebook,
                                        help="Output kept per notebook, in bytes.").tag(config=True)
    per_assignment = Dict(help="{assignment: {field: value}} overriding the limits above for one assignment.").tag(config=True)

    def for_assignment(self, assignment: str | None) -> Limits:
        """The limits that apply to ``assignment``.

        Raises:
            ValueError: an override names a field that is not a limit.
        """
        fields = {f.name for f in dataclasses.fields(Limits)}
        base = {name: getattr(self, name) for name in fields}
        override = dict(self.per_assignment.get(assignment or "", {}))
        unknown = set(override) - fields
        if unknown:
            raise ValueError(f"SandboxLimits.per_assignment[{assignment!r}] names unknown limits {sorted(unknown)}; "
                             f"the limits are {sorted(fields)}")
        return Limits(**{**base, **override})


def _own_group(controller: str) -> str:
    """This process's group in a cgroup v1 hierarchy ("/" when it is at the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


class Cgroup:
    """A child group in the cgroup v1 ``memory`` and ``pids`` hierarchies, for one kernel.

    Processes join by writing their pid to each of :attr:`procs_files` before they start anything (the
    sandbox launcher does it); their children inherit the group.
    """

    def __init__(self, memory: Path, pids: Path):
        self.memory, self.pids = memory, pids

    @classmethod
    def create(cls, limits: Limits, name: str | None = None, root: Path = CGROUP_ROOT) -> "Cgroup":
        """Make the groups and set their limits.

        Raises:
            OSError: no cgroup v1 memory and pids hierarchy here, or no permission to create groups in it.
        """
        name = name or f"da6401-{uuid.uuid4().hex[:12]}"
        made = []
        try:
            for controller in ("memory", "pids"):
                base = root / controller / _own_group(controller).lstrip("/")
                if not (base / "cgroup.procs").is_file():
                    base = root / controller  # our own group is not visible in this mount: use the root
                path = base / name
                path.mkdir()
                made.append(path)
            group = cls(*made)
            (group.memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            memsw = group.memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # count swap too, where the kernel accounts it
                memsw.write_text(str(limits.memory_bytes))
            (group.pids / "pids.max").write_text(str(limits.processes))
            return group
        except OSError:
            for path in reversed(made):
                try:
                    path.rmdir()
                except OSError:
                    pass
            raise

    @property
    def procs_files(self) -> list[Path]:
        return [self.memory / "cgroup.procs", self.pids / "cgroup.procs"]

    def _read(self, path: Path) -> str:
        try:
            return path.read_text()
        except OSError:
            return ""

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this group (0 before Linux 4.13, see failcnt)."""
        for line in self._read(self.memory / "memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def hit_memory_limit(self) -> bool:
        """Did the group reach its memory limit (an allocation failed or a process was killed for it)?"""
        failcnt = self._read(self.memory / "memory.failcnt").strip()
        return self.oom_kills() > 0 or (failcnt.isdigit() and int(failcnt) > 0)

    def peak_memory(self) -> int:
        value = self._read(self.memory / "memory.max_usage_in_bytes").strip()
        return int(value) if value.isdigit() else 0

    def hit_process_limit(self) -> bool:
        """Was a fork or thread refused because the group had ``processes`` already?"""
        for line in self._read(self.pids / "pids.events").splitlines():
            if line.startswith("max "):
                return int(line.split()[1]) > 0
        return False

    def members(self) -> list[int]:
        return [int(p) for p in self._read(self.pids / "cgroup.procs").split()]

    def kill_all(self) -> None:
        """SIGKILL every process still in the group."""
        for pid in self.members():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Kill what is left and delete the groups (best effort: a group that is still busy stays)."""
        self.kill_all()
        for path in (self.memory, self.pids):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still exiting
                    import time
                    time.sleep(0.05)


def rlimit_args(limits: Limits, cgroup: Cgroup | None) -> list[str]:
    """The launcher's rlimit options: file size always; address space and processes only without a cgroup."""
    args = ["--rlimit", f"FSIZE={limits.file_bytes}"]
    if cgroup is None:
        # Weaker stand-ins: RLIMIT_AS also counts address space reserved but never used (torch reserves a lot),
        # hence the headroom; RLIMIT_NPROC counts every process of the user, and root ignores it.
        args += ["--rlimit", f"AS={limits.memory_bytes * 4}", "--rlimit", f"NPROC={limits.processes}"]
    for path in cgroup.procs_files if cgroup else ():
        args += ["--join", str(path)]
    return args
