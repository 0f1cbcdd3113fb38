"""``%%tests`` in the student's own kernel: run the cell's visible tests there and print their report.

This is what a student sees in Jupyter and what ``nbgrader validate`` runs. Under ``nbgrader autograde`` test
cells never reach the kernel: the trusted grader runs them (:mod:`da6401.grader.cell`), with the same runner
(:mod:`da6401.testcell`) and the same report, so a test reads and reports alike in both places.

Each cell's tests run in a namespace of their own (the notebook's names are looked up, never changed), so a
test cell cannot leave test functions or variables behind, and one broken cell never costs another its points.
Anything the code under test writes on stderr goes to stdout: nbgrader scores stderr in a test cell as 0.
"""
from __future__ import annotations

import contextlib
import sys

from da6401.testcell import TestNamespace, points, report, run_cell, summary


class TestsFailed(AssertionError):
    """Some tests of a ``%%tests`` cell failed; the report above says which and why."""

    __test__ = False  # not a pytest test class


def local_environment(user_ns: dict) -> dict:
    """Names a test cell sees besides the notebook's own: ``points`` and ``notebook`` (the namespace itself)."""
    return {"points": points, "notebook": user_ns}


def run_cell_tests(shell, cell: str) -> None:
    """Run the tests that ``cell`` defines against ``shell``'s namespace and print their report.

    Raises:
        TestsFailed: when the cell could not run, defined no test, or a test failed.
    """
    __tracebackhide__ = True
    user_ns = shell.user_ns

    def lookup(name: str):
        try:
            return user_ns[name]
        except KeyError:
            raise NameError(f"name {name!r} is not defined") from None

    namespace = TestNamespace(local_environment(user_ns), lookup)
    with contextlib.redirect_stderr(sys.stdout):
        result = run_cell(cell, namespace, filename="<test cell>")
    print(report(result), end="")
    if result.error or result.failed:
        raise TestsFailed(summary(result))


def register(shell) -> None:
    """Register the ``%%tests`` cell magic in an IPython shell."""

    def tests(line: str, cell: str) -> None:
        __tracebackhide__ = True
        run_cell_tests(shell, cell)

    shell.register_magic_function(tests, magic_kind="cell", magic_name="tests")
