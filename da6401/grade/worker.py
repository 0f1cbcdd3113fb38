"""A long-lived local worker: ``python -m da6401.grade.worker``, started by the driver, one per worker.

It reads :class:`~da6401.grade.job.Job` objects from the driver and answers each with its
:class:`~da6401.grade.job.Result`, grading in this process (:func:`da6401.grade.job.run` with ``in_process``), so
that nbgrader, torch, the grader's checks and the DCGAN judge load once per worker. The two ends are the driver
and this worker, both trusted: length-prefixed pickles over the worker's own stdin and a copy of its stdout (the
real stdout goes to /dev/null, so nothing nbgrader prints can break the protocol). Student code never reaches
this process: it runs in the sandboxed kernels, as under ``nbgrader autograde``.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct("!Q")


def send(stream: BinaryIO, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO):
    """The next object, or None at the end of the stream (the other end is gone)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def main() -> int:
    from da6401.grade.job import Result, run

    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")
    requests = sys.stdin.buffer
    while (job := receive(requests)) is not None:
        try:
            result = run(job, in_process=True)
        except Exception as e:  # a submission that cannot even be unpacked (a link out of its folder, ...)
            result = Result(job.student, False, 0.0, f"could not be graded: {type(e).__name__}: {e}"[:600])
        send(replies, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
