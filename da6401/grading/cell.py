"""``%%tests``: run the pytest-style tests that one notebook cell defines.

A test cell looks like::

    %%tests
    def test_softmax_rows_sum_to_one():
        p = softmax(np.array([[1.0, 2.0, 3.0]]))
        assert_close(p.sum(axis=1), [1.0], name="row sums")

The magic (1) forgets ``test_*`` functions left by earlier cells (not other ``test_*`` variables), so one cell's
failure never costs another cell its points; (2) runs the cell body with plain
``assert`` rewritten by pytest, so a failing assert shows the values compared;
(3) runs the cell's tests with pytest, printing the report on stdout; and
(4) raises :class:`TestsFailed` when any test fails, which nbgrader scores 0.

Anything the code under test writes on stderr (warnings, progress bars) goes to
stdout instead: nbgrader scores any stderr output in a graded cell as 0.
"""
from __future__ import annotations

import contextlib
import fnmatch
import sys

import ipytest

TEST_PATTERN = "test_*"
# tee-sys: what a passing test prints (a gradient check, a measured accuracy) is shown too, not swallowed.
PYTEST_ARGS = ("-q", "--color=no", "-p", "no:cacheprovider", "--tb=short", "-W", "default", "--capture=tee-sys")


class TestsFailed(AssertionError):
    """Some tests of a ``%%tests`` cell failed; the pytest report above says which and why."""

    __test__ = False  # not a pytest test class


class _Outcomes:
    """pytest plugin that keeps each test's outcome and one-line failure message."""

    def __init__(self):
        self.failed: list[tuple[str, str]] = []
        self.passed = 0

    def pytest_runtest_logreport(self, report):
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash else str(report.longrepr).strip().splitlines()[-1]
            self.failed.append((report.nodeid.split("::")[-1], message.splitlines()[0]))
        elif report.when == "call" and report.passed:
            self.passed += 1


def run_cell_tests(shell, cell: str) -> None:
    """Execute ``cell`` in ``shell``'s namespace, then run the tests it defined.

    Raises:
        TestsFailed: when the cell body raised, defined no test, or a test failed.
    """
    __tracebackhide__ = True  # IPython then shows the failure, not this module's frames
    import __main__

    forget_tests(vars(__main__))
    with contextlib.redirect_stderr(sys.stdout):
        result = shell.run_cell(cell, store_history=False, silent=False)
        if not result.success:
            raise TestsFailed("the test cell itself raised an error (traceback above); no test ran")
        outcomes = _Outcomes()
        exit_code = ipytest.run(*PYTEST_ARGS, module=__main__, plugins=[outcomes], raise_on_error=False,
                                addopts=(), coverage=False)
    if exit_code == 5:
        raise TestsFailed("this cell defines no test_* function")
    if exit_code != 0:
        # The message repeats the summary: `nbgrader validate` shows a cell's error, not its report.
        lines = [f"  {name}: {message}" for name, message in outcomes.failed] or ["  (see the report above)"]
        raise TestsFailed(f"{len(outcomes.failed)} of {len(outcomes.failed) + outcomes.passed} tests failed "
                          "(full report above):\n" + "\n".join(lines))


def forget_tests(namespace: dict) -> None:
    """Delete the test functions earlier cells defined; keep data such as ``test_images``."""
    for name in [n for n, v in namespace.items() if fnmatch.fnmatchcase(n, TEST_PATTERN) and callable(v)]:
        del namespace[name]


def register(shell) -> None:
    """Register ``%%tests`` and pytest's assert rewriting in an IPython shell."""
    ipytest.config(rewrite_asserts=True, magics=False, clean=False)

    def tests(line: str, cell: str) -> None:
        __tracebackhide__ = True
        run_cell_tests(shell, cell)

    shell.register_magic_function(tests, magic_kind="cell", magic_name="tests")
