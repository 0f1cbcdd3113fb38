"""The sandbox every submission's kernel runs in under ``nbgrader autograde``.

- :mod:`da6401.sandbox.bwrap`: what the kernel sees (bubblewrap namespaces and mounts), fail-closed probing.
- :mod:`da6401.sandbox.limits`: memory, processes, file size (cgroup v1, rlimits), wall clock and output caps.
- :mod:`da6401.sandbox.launch`: the kernel's first process, which joins the cgroups before anything starts.
- :mod:`da6401.sandbox.kernel`: the Jupyter kernel manager that starts kernels inside it.

Configured in ``nbgrader_config.py`` (``c.Sandbox``, ``c.SandboxLimits``); used by
:class:`da6401.nbgrader_ext.SandboxedExecute`.
"""
from da6401.sandbox.bwrap import Sandbox, SandboxUnavailable
from da6401.sandbox.limits import Limits, SandboxLimits

__all__ = ["Limits", "Sandbox", "SandboxLimits", "SandboxUnavailable"]
