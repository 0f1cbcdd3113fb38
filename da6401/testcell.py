"""Run the tests one test cell defines and report them: shared by the student's ``%%tests`` and the grader.

A test cell defines pytest-style ``test_*`` functions with plain ``assert``::

    %%tests
    def test_softmax_rows_sum_to_one():
        p = softmax(np.array([[1.0, 2.0, 3.0]]))
        assert_close(p.sum(axis=1), [1.0], name="row sums")

    @points(2)                      # optional: this test alone is worth 2 of the cell's points
    def test_softmax_of_huge_logits_is_finite(): ...

:func:`run_cell` executes the cell's source in a namespace of its own (a :class:`TestNamespace`: the test
environment's names first, then the notebook's), with ``assert`` rewritten by pytest so that a failure shows the
values compared, then calls each test and returns :class:`Outcome` s. :func:`report` turns them into what the
student reads: per test its name, pass or fail, its points and its message. A test between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` is *hidden*: its report never quotes a line of its code
(no traceback into it, no pytest "where" explanations), only its message.

In the student's kernel the notebook's names are the notebook's objects; in the grader they are the data and
handles that :mod:`da6401.grader.channel` brings across (see :mod:`da6401.grader.cell`).
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
import re
import traceback
from dataclasses import dataclass, field
from typing import Callable

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
MAGIC = re.compile(r"\A\s*%%tests[^\n]*\n?")
PRINTED_LIMIT = 4000


def points(n: float):
    """Decorator: the test is worth ``n`` points of its cell (partial credit; all tests of the cell must say)."""
    def mark(fn):
        fn.__points__ = float(n)
        return fn
    return mark


class TestNamespace(dict):
    """Globals of a test cell: its own definitions, then ``env`` (the test environment), then the notebook
    (``lookup(name)``, which raises NameError when the notebook has no such name). Builtins stay builtins."""

    def __init__(self, env: dict, lookup: Callable[[str], object]):
        super().__init__(env)
        self.lookup = lookup
        self["__builtins__"] = builtins

    def __missing__(self, name: str):
        if hasattr(builtins, name):
            raise KeyError(name)  # Python then looks in builtins
        return self.lookup(name)


@dataclass
class Outcome:
    """What happened to one test."""

    name: str
    hidden: bool
    passed: bool
    message: str = ""          # why it failed, as the student reads it
    printed: str = ""          # what it printed (a measured accuracy, say)
    points: float | None = None


@dataclass
class CellResult:
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None   # the cell itself could not be run (a broken test cell, no test in it)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def score(self, max_points: float) -> float:
        """All or nothing, unless every test carries ``@points``: then the points of the tests that passed."""
        if self.error or not self.outcomes:
            return 0.0
        if all(o.points is not None for o in self.outcomes):
            return min(max_points, sum(o.points for o in self.outcomes if o.passed))
        return max_points if not self.failed else 0.0

    def partial(self) -> bool:
        return bool(self.outcomes) and all(o.points is not None for o in self.outcomes)


def hidden_lines(source: str) -> set[int]:
    """1-based numbers of the lines inside hidden-test regions."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), 1):
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif inside:
            hidden.add(number)
    return hidden


def _compile(source: str, filename: str):
    from _pytest.assertion.rewrite import rewrite_asserts

    tree = ast.parse(source, filename)
    rewrite_asserts(tree, source.encode(), filename)
    return tree, compile(tree, filename, "exec")


def _test_functions(tree: ast.Module) -> list[tuple[str, int]]:
    return [(node.name, node.lineno) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")]


def _assertion_message(e: AssertionError, hidden: bool) -> str:
    text = str(e).strip()
    if not hidden:
        return text or "assertion failed"
    kept = []
    for line in text.splitlines():  # pytest's explanation: "assert <values>", then " +  where ..." lines of source
        if line.lstrip().startswith(("+", "where", "~")):
            break
        kept.append(line)
        if line.startswith("assert "):
            break
    return "\n".join(kept) or "assertion failed"


def _error_message(e: BaseException, hidden: bool, student_error: type | None) -> str:
    if student_error is not None and isinstance(e, student_error):
        where = getattr(e, "student_traceback", "").rstrip()
        return f"your code raised {e}" + (f"\n{where}" if where else "")
    if hidden:
        return f"the test stopped with {type(e).__name__}: {e}"
    frames = traceback.format_exception(type(e), e, e.__traceback__)
    return "".join(frames[-6:]).rstrip()


def run_cell(source: str, namespace: TestNamespace, filename: str = "<test cell>",
             student_error: type | None = None, fatal: tuple[type, ...] = ()) -> CellResult:
    """Execute a test cell's source in ``namespace`` and run the tests it defines, in order.

    Args:
        student_error: the exception type that means "the student's code raised" (the grader's StudentError);
            its message and the student's own traceback are shown, never the test's frames.
        fatal: exception types that are not a test's failure but the kernel's (they propagate).
    Returns:
        One Outcome per ``test_*`` function, or a CellResult with ``error`` set if the cell could not run.
    """
    source = MAGIC.sub("", source, count=1)
    hidden = hidden_lines(source)
    try:
        tree, code = _compile(source, filename)
    except SyntaxError as e:
        return CellResult(error=f"the test cell does not compile: {e}")
    result = CellResult()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    except fatal:
        raise
    except Exception as e:
        return CellResult(error=f"the test cell itself raised {type(e).__name__}: {e}; no test ran")
    tests = _test_functions(tree)
    if not tests:
        return CellResult(error="this cell defines no test_* function")
    for name, lineno in tests:
        fn = namespace.get(name)
        if not callable(fn):
            continue
        is_hidden = lineno in hidden
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                fn()
            outcome = Outcome(name, is_hidden, True)
        except fatal:
            raise
        except AssertionError as e:
            if student_error is not None and isinstance(e, student_error):
                outcome = Outcome(name, is_hidden, False, _error_message(e, is_hidden, student_error))
            else:
                outcome = Outcome(name, is_hidden, False, _assertion_message(e, is_hidden))
        except Exception as e:
            outcome = Outcome(name, is_hidden, False, _error_message(e, is_hidden, student_error))
        outcome.printed = out.getvalue()[-PRINTED_LIMIT:]
        outcome.points = getattr(fn, "__points__", None)
        result.outcomes.append(outcome)
    return result


def report(result: CellResult, max_points: float | None = None) -> str:
    """The text a student reads under a test cell."""
    if result.error:
        return f"ERROR  {result.error}\n"
    lines = []
    for o in result.outcomes:
        label = o.name + (" (hidden test)" if o.hidden else "") + (f" [{o.points:g} pt]" if o.points is not None else "")
        lines.append(f"{'PASS' if o.passed else 'FAIL'}  {label}")
        for text in (o.printed.rstrip(), o.message if not o.passed else ""):
            lines += ["      " + line for line in text.splitlines() if line.strip()]
    n, failed = len(result.outcomes), len(result.failed)
    summary = f"{n - failed} of {n} tests passed"
    if max_points is not None:
        summary += f": {result.score(max_points):g} of {max_points:g} points"
    return "\n".join(lines + [summary]) + "\n"


def summary(result: CellResult) -> str:
    """One line naming the failed tests (the error output's message, which ``nbgrader validate`` shows)."""
    if result.error:
        return result.error
    failed = result.failed
    return f"{len(failed)} of {len(result.outcomes)} tests failed: " + ", ".join(
        f"{o.name}: {_headline(o.message)}" for o in failed)


def _headline(message: str) -> str:
    """The line of a failure message that says what went wrong: the exception's own line when the message is a
    traceback (``NotImplementedError``, say, for a function not written yet), else the first line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "failed"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]
