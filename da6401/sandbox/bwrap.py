"""The sandbox of one submission's kernel, built with bubblewrap (``bwrap``).

What the kernel sees (everything else of the machine does not exist for it):

- ``/home/student/<assignment>``: its own working copy of the submission's files (not the notebook, which
  holds the hidden tests once autograde has restored them, and not ``nbgrader_config.py``), writable, on a
  private tmpfs whose size counts against the kernel's memory limit; ``/tmp`` likewise;
- the Python environment and the student-side parts of the course package, read-only, at their usual paths;
- the data root, read-only, at ``/data``, without the public test splits (the grader measures on them);
- ``/usr`` (programs and libraries, not ``/usr/local``), a private ``/proc`` and a minimal ``/dev``;
- one private folder holding the kernel's connection file and its IPC sockets, the only way in or out.

Namespaces: PID (every process it starts dies with it), network (no interface but its own loopback), IPC, UTS
and cgroup namespaces, a new session (no terminal to inject into), and a user namespace that cannot make more.
Resource limits come from :mod:`da6401.sandbox.limits`.

Who the kernel is on the host matters as much as what it sees: a process that is root on the host, even
without capabilities and behind read-only mounts, may write what root owns that the mounts leave visible (such
as ``/proc/sys/kernel/core_pattern``, which runs a program as root on the next crash). So the kernel is never
root on the host. Run by root, the sandbox is built in two layers: bubblewrap as root makes the mounts and
namespaces, ``setpriv`` drops to an unprivileged host uid (:attr:`Sandbox.host_uid`) with no capabilities, and a
second, unprivileged bubblewrap puts the kernel in a user namespace that cannot make further ones. Run by any
other user, one unprivileged bubblewrap does both, and the kernel is that user, without capabilities.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from da6401.sandbox.limits import Cgroup, Limits, rlimit_args

HOME = "/home/student"
DATA = "/data"
SUBMISSION = "/run/submission"  # read-only view of the host copy; the kernel works on a copy of it in HOME
SOCKET_OWNER = 65533           # a uid outside the sandbox's user namespace, so the kernel cannot chmod its way back


class SandboxUnavailable(SystemExit):
    """bubblewrap is missing or cannot create namespaces here. A SystemExit, so that nbgrader, which catches
    every Exception per submission and moves on, stops instead of grading the whole class unsandboxed."""


UNAVAILABLE = """\
Autograde stopped: the sandbox is not available ({reason}).
Every submission runs in a bubblewrap sandbox; nothing was graded.
- Install bubblewrap: `apt-get install bubblewrap` (Debian, Ubuntu) or `dnf install bubblewrap` (Fedora, RHEL).
- If it is installed but cannot create namespaces, unprivileged user namespaces are switched off in the kernel:
  `sysctl -w kernel.unprivileged_userns_clone=1` (Debian) or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`
  (Ubuntu 23.10 and later), or run autograde as root.
- Only for submissions you trust (your own test notebooks), grade without it:
  `c.Sandbox.run_unsandboxed = True` in nbgrader_config.py."""


class Sandbox(Configurable):
    """How submissions' kernels are sandboxed; set in ``nbgrader_config.py`` (defaults suit the course)."""

    run_unsandboxed = Bool(False, help="Run kernels without bubblewrap, cgroups or network isolation. Only for "
                                       "notebooks you trust: student code can then read and write everything you "
                                       "can.").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    data_root = Unicode("", help="Host folder with the datasets, shown read-only at /data "
                                 "(default: da6401.data.data_root()).").tag(config=True)
    withheld_splits = List(Unicode(), ["mnist:test", "cifar10:test", "multi30k:test_2016_flickr"],
                           help="Dataset splits the kernel does not get (\"dataset:split\"): the public test sets, which "
                                "the grader measures models on itself; a notebook that could read them while graded "
                                "could look its answers up.").tag(config=True)
    student_package = List(Unicode(), ["__init__.py", "data", "student", "testcell.py", "wire.py", "text.py", "devices.py"],
                           help="Parts of the da6401 package the kernel may import (relative to the package); "
                                "the rest does not exist in the sandbox.").tag(config=True)
    exclude_from_copy = List(Unicode(), ["*.ipynb", "nbgrader_config.py", ".ipynb_checkpoints"],
                             help="Files of the submission folder left out of the kernel's working copy.").tag(config=True)
    datasets = List(Unicode(), ["mnist", "cifar10", "multi30k"],
                    help="Datasets fetched into the data root (from the mirror or the official URLs) before a kernel "
                         "starts: the kernel has no network to fetch them itself.").tag(config=True)
    uid = Integer(1000, help="The kernel's user id inside the sandbox.").tag(config=True)
    host_uid = Integer(60001, help="When autograde runs as root: the unprivileged host uid (and gid) the kernel runs "
                                   "as. Use one that owns nothing on the machine.").tag(config=True)
    extra_ro_binds = List(Unicode(), help="More host paths to show read-only at the same path.").tag(config=True)

    def probe(self) -> None:
        """Fail closed, with one message saying what to do, unless bubblewrap can build this sandbox here.

        Raises:
            SandboxUnavailable: bwrap is missing or cannot create the namespaces.
        """
        if self.run_unsandboxed:
            return
        exe = shutil.which(self.bwrap)
        if exe is None:
            raise SandboxUnavailable(UNAVAILABLE.format(reason=f"`{self.bwrap}` is not installed"))
        with tempfile.TemporaryDirectory() as tmp:
            command = self._namespace_args() + self._system_binds() + self._python_binds() + [
                "--tmpfs", "/tmp", "--remount-ro", "/", "--", *self._drop_privileges(), sys.executable, "-c",
                "import os; open('/proc/sys/kernel/core_pattern', 'a')"]
            done = subprocess.run([exe, *command], capture_output=True, text=True, timeout=60, cwd=tmp)
        if done.returncode == 0:  # the probe could open a file root owns for writing: the kernel would be root
            raise SandboxUnavailable(UNAVAILABLE.format(reason="a process in it may write /proc/sys as root"))
        if "PermissionError" not in done.stderr:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise SandboxUnavailable(UNAVAILABLE.format(reason=f"`{self.bwrap}` failed: {reason}"))

    # --- pieces of the command line -----------------------------------------------------------------
    @staticmethod
    def privileged() -> bool:
        """Is bubblewrap run as root (two layers, see the module docstring), rather than as an ordinary user?"""
        return os.geteuid() == 0

    def _namespace_args(self) -> list[str]:
        common = ["--hostname", "sandbox", "--die-with-parent", "--new-session"]
        if self.privileged():  # the outer, root layer: no user namespace here (it would map the kernel to root)
            return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", *common]
        return ["--unshare-all", "--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid),
                "--disable-userns", *common, "--cap-drop", "ALL"]

    def _drop_privileges(self) -> list[str]:
        """After the root layer: become :attr:`host_uid` without capabilities, then enter a user namespace that can
        make no other (the inner, unprivileged bubblewrap). It keeps the outer layer's mounts with ``--dev-bind``: a
        plain ``--bind`` would remount them all ``nodev``, and the outer layer's /dev (null, zero, urandom, ...; no
        disk) would be unusable (torch cannot start without /dev/urandom)."""
        if not self.privileged():
            return []
        uid = str(self.host_uid)
        return [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
                shutil.which(self.bwrap) or self.bwrap, "--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid),
                "--disable-userns", "--die-with-parent", "--dev-bind", "/", "/", "--"]

    @classmethod
    def _system_binds(cls) -> list[str]:
        binds = [path for path in ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/share/zoneinfo",
                                   "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/fonts")
                 if Path(path).exists()]
        args = cls._parents(binds)
        for path in binds:
            args += ["--ro-bind", path, path]
        for link in ("/bin", "/lib", "/lib64", "/sbin"):
            target = Path(link)
            if target.is_symlink():
                args += ["--symlink", os.readlink(target), link]
            elif target.is_dir():
                args += ["--ro-bind", link, link]
        return args + ["--proc", "/proc", "--dev", "/dev"]

    @staticmethod
    def _parents(paths, mounted=("/", "/tmp", "/dev", "/proc")) -> list[str]:
        """``--dir`` for the ancestors of bind targets, world-readable: bubblewrap would otherwise make them with
        the host's modes, and a kernel that is not root could not walk through a 0700 /root to its Python.
        ``mounted``: folders that are mount points already (left as they are)."""
        made, args = set(mounted), []
        for path in paths:
            for parent in reversed(Path(path).parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
        return args

    def _python_binds(self) -> list[str]:
        """The interpreter, its standard library and the environment's site-packages; the course package only
        as far as :attr:`student_package` allows."""
        import da6401

        paths: list[Path] = []
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
            for part in ("bin", "lib", "lib64", "pyvenv.cfg"):
                candidate = Path(prefix) / part
                if candidate.exists() and not candidate.is_symlink():
                    paths.append(candidate)
        package = Path(da6401.__file__).resolve().parent
        inside_env = any(package.is_relative_to(p) for p in paths)
        targets = sorted(set(paths)) + [package / n for n in self.student_package] + list(map(Path, self.extra_ro_binds))
        args = self._parents(targets)
        for path in sorted(set(paths)):
            args += ["--ro-bind", str(path), str(path)]
        if inside_env:  # an installed (not editable) package: hide the trusted parts under empty folders
            for child in package.iterdir():
                if child.name not in self.student_package and child.name != "__pycache__":
                    args += ["--tmpfs", str(child)] if child.is_dir() else ["--ro-bind", "/dev/null", str(child)]
        else:
            for name in self.student_package:
                if (package / name).exists():
                    args += ["--ro-bind", str(package / name), str(package / name)]
        for extra in self.extra_ro_binds:
            args += ["--ro-bind", extra, extra]
        return args

    def fetch_data(self) -> None:
        """Make sure every dataset of :attr:`datasets` is complete in the data root (a no-op once it is).

        Raises:
            DatasetMissingError: a dataset can be neither found nor fetched; grading cannot go on without it.
        """
        from da6401.data import fetch

        for name in self.datasets:
            fetch(name, self.data_root or None)

    def _data_binds(self) -> list[str]:
        from da6401.data import data_root

        from da6401.data.fetch import SPLIT_FILES

        root = Path(self.data_root or data_root()).resolve()
        if not root.is_dir():
            return ["--perms", "0755", "--dir", DATA]
        hidden = {(name, stem) for item in self.withheld_splits for (name, split), stems in SPLIT_FILES.items()
                  if item == f"{name}:{split}" for stem in stems}
        files = [(path, f"{DATA}/{path.relative_to(root).as_posix()}") for path in sorted(root.rglob("*"))
                 if path.is_file() and not path.name.startswith(".")
                 and (path.relative_to(root).parts[0], path.name.removesuffix(".gz")) not in hidden]
        args = ["--perms", "0755", "--dir", DATA] + self._parents([inside for _, inside in files], mounted=("/", DATA))
        for path, inside in files:
            args += ["--ro-bind", str(path), inside]
        return args

    def session(self, submission: Path, assignment: str, limits: Limits, log=None) -> "Session":
        """A sandbox for one notebook of ``submission`` (a folder), to be used as a context manager."""
        return Session(self, Path(submission), assignment, limits, log)


def _copy_submission(source: Path, target: Path, exclude: list[str]) -> None:
    """Copy the submission's regular files and folders; never follow a symlink (it could point at the
    gradebook), never copy a device or a socket."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if any(fnmatch(entry.name, pattern) for pattern in exclude) or entry.is_symlink():
            continue
        if entry.is_dir():
            _copy_submission(entry, target / entry.name, exclude)
        elif entry.is_file():
            shutil.copyfile(entry, target / entry.name, follow_symlinks=False)


@dataclass
class Session:
    """The sandbox of one kernel: private folders and cgroup while it is open; :meth:`wrap` makes the command."""

    sandbox: Sandbox
    submission: Path
    assignment: str
    limits: Limits
    log: object = None
    private: Path | None = None
    cgroup: Cgroup | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def socket_dir(self) -> Path:
        return self.private / "ipc"

    @property
    def workdir(self) -> str:
        """The kernel's working directory, as the kernel sees it."""
        return f"{HOME}/{self.assignment or 'submission'}" if not self.sandbox.run_unsandboxed else str(self.private / "work")

    def __enter__(self) -> "Session":
        self.sandbox.probe()
        self.sandbox.fetch_data()
        self.private = Path(tempfile.mkdtemp(prefix="da6401-kernel-"))
        self.private.chmod(0o700)
        self.socket_dir.mkdir(mode=0o700)
        if not self.sandbox.run_unsandboxed and self.sandbox.privileged():
            os.chown(self.socket_dir, self.sandbox.host_uid, self.sandbox.host_uid)  # the kernel makes its sockets here
        _copy_submission(self.submission, self.private / ("work" if self.sandbox.run_unsandboxed else "submission"),
                         list(self.sandbox.exclude_from_copy))
        if not self.sandbox.run_unsandboxed:
            try:
                self.cgroup = Cgroup.create(self.limits)
            except OSError as e:
                self.cgroup = None
                self.notes.append(f"no cgroup v1 memory/pids hierarchy usable ({e}); memory and process limits fall "
                                  "back to rlimits, which are weaker")
                if self.log:
                    self.log.warning("sandbox: %s", self.notes[-1])
        return self

    def __exit__(self, *exc) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.private is not None:
            try:
                os.chown(self.socket_dir, os.getuid(), os.getgid())
            except OSError:
                pass
            shutil.rmtree(self.private, ignore_errors=True)

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment: nothing of the grader's but thread settings."""
        env = {"HOME": HOME, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DA6401_DATA": DATA,
               "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
               "DA6401_WITHHELD": ",".join(self.sandbox.withheld_splits)}
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def wrap(self, kernel_cmd: list[str]) -> list[str]:
        """The command that starts ``kernel_cmd`` inside this sandbox."""
        if self.sandbox.run_unsandboxed:
            return kernel_cmd
        env_args = ["--clearenv"]
        for name, value in self.environment().items():
            env_args += ["--setenv", name, value]
        scratch = str(self.limits.scratch_bytes)
        mounts = (self.sandbox._system_binds() + self.sandbox._python_binds() + self.sandbox._data_binds()
                  + self.sandbox._parents([HOME])
                  + ["--perms", "1777", "--size", scratch, "--tmpfs", HOME,
                     "--perms", "1777", "--size", scratch, "--tmpfs", "/tmp",
                     "--perms", "1777", "--size", scratch, "--tmpfs", "/dev/shm"]
                  + self.sandbox._parents([SUBMISSION, self.socket_dir], mounted=("/", "/tmp", HOME, "/home"))
                  + ["--ro-bind", str(self.private / "submission"), SUBMISSION,
                     "--bind", str(self.socket_dir), str(self.socket_dir), "--chdir", HOME, "--remount-ro", "/"])
        start = (f"mkdir -p {shlex.quote(self.workdir)} && cp -R {SUBMISSION}/. {shlex.quote(self.workdir)} "
                 f"&& cd {shlex.quote(self.workdir)} && exec \"$@\"")
        launcher = [sys.executable, "-m", "da6401.sandbox.launch", *rlimit_args(self.limits, self.cgroup), "--"]
        bwrap = [shutil.which(self.sandbox.bwrap) or self.sandbox.bwrap, *self.sandbox._namespace_args(),
                 *env_args, *mounts, "--", *self.sandbox._drop_privileges(), "/bin/sh", "-c", start, "sh"]
        return launcher + bwrap + kernel_cmd

    def seal(self) -> None:
        """Once the kernel has made its sockets, take away its write access to the one host folder it shares:
        it could otherwise fill the host's disk there."""
        if self.sandbox.run_unsandboxed:
            return
        try:
            self.socket_dir.chmod(0o555)
            if os.getuid() == 0:
                os.chown(self.socket_dir, SOCKET_OWNER, SOCKET_OWNER)
        except OSError as e:
            self.notes.append(f"could not make the socket folder read-only: {e}")
