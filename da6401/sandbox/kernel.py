"""A Jupyter kernel manager whose kernels start inside a :class:`~da6401.sandbox.bwrap.Session`.

The kernel is the stock IPython kernel of the course environment; only its command line is wrapped
(launcher, then bubblewrap, then the kernel). It talks to the grader over ZeroMQ IPC sockets in the session's
private folder, not over TCP: the kernel has no network, and nothing else on the machine can connect.
"""
from __future__ import annotations

from jupyter_client.manager import AsyncKernelManager

from da6401.sandbox.bwrap import Session


class SandboxedKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` for one sandboxed kernel. Give it the session: ``SandboxedKernelManager(session=...)``."""

    def __init__(self, session: Session, **kwargs):
        super().__init__(**kwargs)
        self.sandbox_session = session
        self.transport = "ipc"
        self.ip = str(session.socket_dir / "kernel")
        self.connection_file = str(session.socket_dir / "kernel.json")

    async def interrupt_kernel(self) -> None:
        """Interrupt by message on the control channel: a signal to the process group would stop at bubblewrap,
        which puts the kernel in a session of its own."""
        if self.has_kernel:
            self._connect_control_socket()
            self.session.send(self._control_socket, self.session.msg("interrupt_request", content={}))

    def write_connection_file(self, **kwargs):
        """Write the connection file where the kernel, an unprivileged user in the sandbox, can read it."""
        result = super().write_connection_file(**kwargs)
        session = self.sandbox_session
        if not session.sandbox.run_unsandboxed and session.sandbox.privileged():
            import os

            os.chown(self.connection_file, session.sandbox.host_uid, session.sandbox.host_uid)
        return result

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return self.sandbox_session.wrap(super().format_kernel_cmd(extra_arguments))

    @property
    def exit_status(self) -> int | None:
        """The kernel's exit status once it has ended (bubblewrap passes the kernel's own on; 128 + N for a
        kernel killed by signal N), else None."""
        process = getattr(self.provisioner, "process", None)
        return None if process is None else process.poll()
