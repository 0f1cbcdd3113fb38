"""The first process of a sandboxed kernel: join its cgroups, set its rlimits, then become bubblewrap.

    python -m da6401.sandbox.launch [--join CGROUP_PROCS_FILE]... [--rlimit NAME=VALUE]... -- bwrap ...

It must run before anything of the kernel exists, so that every process the kernel ever starts inherits the
groups and limits (moving a running process into a cgroup does not move its children). It imports nothing but
the standard library and replaces itself with the command (``execvp``), so it costs a few milliseconds.
"""
from __future__ import annotations

import os
import resource
import sys


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m da6401.sandbox.launch [--join FILE]... [--rlimit NAME=VALUE]... -- COMMAND...",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    pid = str(os.getpid())
    i = 0
    while i < len(options):
        flag, value = options[i], options[i + 1]
        if flag == "--join":
            with open(value, "w") as f:
                f.write(pid)
        elif flag == "--rlimit":
            name, limit = value.split("=", 1)
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (int(limit), int(limit)))
        else:
            print(f"da6401.sandbox.launch: unknown option {flag}", file=sys.stderr)
            return 2
        i += 2
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
