"""Grade mutants of a notebook without nbgrader, a few seconds each: which test cells does each bug cost?

    python -m da6401.mutants [--verbose] [--workers N] [assignment/notebook ...]   # README's table

A mutant (``grader_tests/mutants/<assignment>/<notebook>/<name>.toml``) is a plausible student bug, or a correct
alternative, written as edits of the reference solution (the format of ``da6401.submissions``)::

    description = "softmax without the row maximum subtracted"
    kind = "bug"                 # or "alternative": a correct solution written differently
    costs = ["test_softmax"]     # the test cells it must lose (none for an alternative)
    [[edit]]
    cell = "softmax_ce"
    old = "e = np.exp(z - z.max(axis=1, keepdims=True))"
    new = "e = np.exp(z)"

:class:`NotebookRun` grades as autograde would, but in one process tree and without nbgrader or a sandbox: the
notebook's set-up cells (those before its first solution cell) run once in an IPython shell in a long-lived
child (the *zygote*: under autograde, so nothing trains and the test splits are withheld from the notebook), which
then forks one grandchild per grading. A grandchild runs the rest of the notebook in order, as autograde does,
with the mutant's cells: at its place each test cell (hidden tests included, through
:func:`da6401.testcell.run_cell`, in local mode) that the edit can reach (:func:`graded_tests`), and every code
cell those tests need (:func:`live_cells`: a plot or an experiment no test reads is skipped). Every other test
cell keeps the reference's score. Forking keeps one mutant's state from leaking into the next, and imports,
data and the grader's own data sets are loaded once per notebook. ``workers`` grandchildren run at a time.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import nbformat

from da6401.submissions import REPO, build_notebook, copy_files, load_spec, reference_notebook

MUTANTS = REPO / "grader_tests" / "mutants"
_GRADER_MODULE = re.compile(r"\b(da6401\.grader(?:\.\w+)?)\b")
_MAGIC = re.compile(r"^\s*[%!].*$", re.M)


@dataclass
class Mutant:
    """One bug or correct alternative of a notebook."""

    name: str
    description: str
    kind: str
    costs: list[str]
    spec: dict = field(repr=False)


def load_mutants(assignment: str, notebook: str) -> list[Mutant]:
    """The mutants of ``notebook`` (its file name without .ipynb), sorted by name."""
    found = []
    for path in sorted((MUTANTS / assignment / notebook).glob("*.toml")):
        spec = tomllib.loads(path.read_text())
        found.append(Mutant(path.stem, spec.get("description", ""), spec.get("kind", "bug"), list(spec.get("costs", [])),
                            {**spec, "base": "reference"}))
    return found


def corpora() -> list[tuple[str, str]]:
    """(assignment, notebook) of every mutant corpus, sorted."""
    return sorted((d.parent.name, d.name) for d in MUTANTS.glob("*/*") if d.is_dir() and any(d.glob("*.toml")))


@dataclass
class Verdict:
    """How one mutant fared: the test cells it lost (scored below the reference) against those it should."""

    mutant: Mutant
    lost: list[str]
    reports: dict[str, str]

    @property
    def as_expected(self) -> bool:
        return set(self.lost) == set(self.mutant.costs)

    @property
    def caught(self) -> bool:
        """A bug is caught when it loses at least one of the cells it should."""
        return bool(set(self.lost) & set(self.mutant.costs))


def grade_corpus(assignment: str, notebook: str, workers: int = 2) -> tuple[dict[str, float], list[Verdict]]:
    """(the reference's score per test cell, a verdict per mutant) for one notebook's corpus."""
    mutants = load_mutants(assignment, notebook)
    with NotebookRun(assignment, notebook, workers=workers) as run:
        reference = run.reference_scores()
        graded = run.score_all(mutants)
    return reference, [Verdict(m, sorted(g for g, s in graded[m.name][0].items() if s < reference[g]),
                               graded[m.name][1]) for m in mutants]


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _base(node) -> str | None:
    """The name at the root of ``a.b[c].d``, or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _imports(cells: list) -> set[str]:
    """Names the notebook binds by ``import`` (modules: calling their functions changes no notebook object)."""
    found = set()
    for cell in cells:
        try:
            tree = ast.parse(_MAGIC.sub("", cell.source)) if cell.cell_type == "code" else None
        except SyntaxError:
            continue
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update((a.asname or a.name).split(".")[0] for a in node.names)
    return found


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds or changes at top level, names it reads) — conservative: every Name loaded anywhere
    counts as read, and ``x.f(...)``, ``x.a = ...``, ``x[i] = ...`` at top level count as changing ``x`` (a model
    loading its weights, a list growing)."""
    statements = _statement_names(source)
    return set().union(*(d for d, _ in statements)), set().union(*(u for _, u in statements))


def _statement_names(source: str, constants: frozenset[str] = frozenset()) -> list[tuple[set[str], set[str]]]:
    """(names bound or changed, names read) of each top-level statement of a cell, as :func:`_names` counts them;
    a method call on one of ``constants`` changes nothing."""
    try:
        tree = ast.parse(_MAGIC.sub("", source))
    except SyntaxError:
        return []
    return [_node_names(node, constants) for node in tree.body]


def _stored(source: str) -> set[str]:
    """Names a cell assigns to (``x = ...``, ``for x in ...``, ``def x``), anywhere in it."""
    try:
        tree = ast.parse(_MAGIC.sub("", source))
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} | {
        n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _node_names(node: ast.stmt, constants: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
    defines, uses = set(), set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        defines.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        defines.update((a.asname or a.name).split(".")[0] for a in node.names)
    else:
        for target in ast.walk(node):
            if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store):
                defines.add(target.id)
            elif isinstance(target, (ast.Attribute, ast.Subscript)) and isinstance(target.ctx, ast.Store):
                defines.add(_base(target))
            elif isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute) \
                    and _base(target.func) not in constants:
                defines.add(_base(target.func))
    defines.discard(None)
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            uses.add(sub.id)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.isidentifier():
            uses.add(sub.value)  # notebook["name"], getattr(module, "name")
        elif isinstance(sub, ast.Global):
            defines.update(sub.names)
    return defines, uses - set(dir(builtins))


def graded_tests(cells: list, edited: set[int], tests: set[int], constants: frozenset[str] = frozenset()) -> list[int]:
    """The test cells an edit of the cells ``edited`` can change: those that read a name an edited cell binds,
    or a later statement binds that reads or rebinds such a name, transitively. Conservative: a name read anywhere
    in a statement, a function body or an ``if`` branch included, counts (and a string that could name one, as in
    ``notebook["x"]``); only a top-level statement that touches no such name (``CHECKPOINT = Path(...)`` beside
    the training it does not depend on) leaves what it binds as the reference has it. ``constants`` are names
    bound to values no method call changes (``CHECKPOINT.exists()`` does not change ``CHECKPOINT``)."""
    modules = _imports(cells)
    stores = [_stored(c.source) for c in cells if c.cell_type == "code"]
    constants = frozenset(n for n in constants if sum(n in s for s in stores) <= 1)  # bound once: stays constant
    dirty: set[str] = set()
    graded = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        if i in tests:
            if _names(cell.source)[1] & dirty:
                graded.append(i)
            continue
        for defines, uses in _statement_names(cell.source, constants):
            if i in edited or (uses | defines) & dirty:
                dirty |= defines - modules
    return graded


def live_cells(cells: list, start: int, graded: set[int], tests: set[int]) -> list[int]:
    """The code cells from ``start`` on that the test cells ``graded`` need, and those test cells, in order.

    Backwards from the end: a test cell in ``graded`` needs the names it reads; any other cell runs when it binds
    or changes a name a later running cell (or graded test) reads, and then its own reads are needed too. A cell
    that only draws a plot or runs an experiment no test reads is left out; everything a graded test can see is
    computed as the notebook computes it, in order (module functions, ``plt.show()`` say, change no name).
    """
    modules = _imports(cells)
    live: set[str] = set()
    chosen = []
    for i in range(len(cells) - 1, start - 1, -1):
        if cells[i].cell_type != "code" or (i in tests and i not in graded):
            continue
        defines, uses = _names(cells[i].source)
        if i in graded or (defines - modules) & live:
            chosen.append(i)
            live |= uses
    return chosen[::-1]


class NotebookRun:
    """The reference of one notebook run once in a zygote process; the reference and its mutants graded from it.

    Args:
        assignment, notebook: e.g. "a2_cnn", "cnn_cifar10".
        files_from: the sample submission whose files (a checkpoint) sit beside the notebook (default: its
            reference sample).
        workers: gradings at a time (each a forked process).
        seconds: a grading still running after this long is killed and scores 0.
    """

    def __init__(self, assignment: str, notebook: str, files_from: str | None = None, workers: int = 1,
                 seconds: float = 600.0):
        self.assignment, self.notebook, self.workers, self.seconds = assignment, notebook, workers, seconds
        filename = f"{notebook}.ipynb"
        source = nbformat.read(REPO / "source" / assignment / filename, as_version=4)
        self.tests = {_grade_id(c): (c.source, float(c.metadata["nbgrader"]["points"])) for c in source.cells
                      if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
                      and not c.metadata["nbgrader"].get("solution")}
        self.reference = self._with_hidden_tests(reference_notebook(REPO, assignment, filename))
        self.prefix = next(i for i, c in enumerate(self.reference.cells)
                           if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
        self.folder = Path(tempfile.mkdtemp(prefix=f"da6401-mutants-{notebook}-"))
        sample = files_from or ("reference" if assignment != "a4_generative" else f"{notebook}_reference")
        copy_files(assignment, load_spec(assignment, sample), self.folder)
        self._zygote = None
        self._reference: dict[str, tuple[float, str]] | None = None
        self.notebook_errors: list[str] = []
        self.constants: frozenset[str] = frozenset()  # names the set-up cells bind to values no call can change

    # --- the zygote -----------------------------------------------------------------------------------
    def _start(self):
        if self._zygote is None:
            context = multiprocessing.get_context("fork")
            ours, theirs = context.Pipe()
            modules = sorted({m for source, _ in self.tests.values() for m in _GRADER_MODULE.findall(source)})
            setup = [(i, c.source) for i, c in enumerate(self.reference.cells[:self.prefix]) if c.cell_type == "code"]
            process = context.Process(target=_zygote, args=(setup, modules, str(self.folder), self.workers,
                                                              self.seconds, theirs), daemon=True)
            process.start()
            theirs.close()
            status = ours.recv()  # the set-up cells have run
            self.notebook_errors = status["errors"]
            self.constants = frozenset(status["constants"])
            self._zygote = (process, ours)
        return self._zygote[1]

    def close(self) -> None:
        if self._zygote is not None:
            process, pipe = self._zygote
            with contextlib.suppress(OSError):
                pipe.send(None)
            process.join(10)
            if process.is_alive():
                process.kill()
            self._zygote = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _with_hidden_tests(self, nb):
        """``nb`` with its test cells' sources as graded (hidden tests included), as autograde restores them."""
        for cell in nb.cells:
            if _grade_id(cell) in self.tests:
                cell.source = self.tests[_grade_id(cell)][0]
        return nb

    def _test_indices(self, nb) -> set[int]:
        return {i for i, c in enumerate(nb.cells) if _grade_id(c) in self.tests}

    def _run(self, jobs: list[dict]) -> list[dict[str, tuple[float, str]]]:
        pipe = self._start()
        pipe.send(jobs)
        return pipe.recv()

    # --- grading --------------------------------------------------------------------------------------
    def reference_scores(self) -> dict[str, float]:
        """{grade_id: score} of the reference: every test cell graded, each at its place."""
        if self._reference is None:
            self._reference = self._run([self._job(self.reference, set(self.tests))])[0]
            self.reference_reports = {g: r for g, (_, r) in self._reference.items()}
        return {g: s for g, (s, _) in self._reference.items()}

    def notebook_of(self, mutant: Mutant):
        """The mutant's notebook, its test cells as graded.

        Raises:
            ValueError: the mutant edits a set-up cell (before the first solution cell), which the zygote ran.
        """
        nb = self._with_hidden_tests(build_notebook(REPO, self.assignment, mutant.spec, f"{self.notebook}.ipynb"))
        early = [e["cell"] for e in mutant.spec.get("edit", [])
                 if any(_grade_id(c) == e["cell"] for c in nb.cells[:self.prefix])]
        if early:
            raise ValueError(f"{mutant.name} edits the set-up cells {early}; mutants edit solution cells")
        return nb

    def affected(self, mutant: Mutant) -> list[str]:
        """The test cells a mutant can change (:func:`graded_tests`, on the mutant's and the reference's cells)."""
        nb = self.notebook_of(mutant)
        edited_ids = {e["cell"] for e in mutant.spec.get("edit", [])}
        edited = {i for i, c in enumerate(nb.cells) if _grade_id(c) in edited_ids}
        tests = self._test_indices(nb)
        self._start()
        graded = (set(graded_tests(nb.cells, edited, tests, self.constants))
                  | set(graded_tests(self.reference.cells, edited, tests, self.constants)))
        return sorted(_grade_id(nb.cells[i]) for i in graded)

    def _job(self, nb, graded: set[str]) -> dict:
        """The steps a grandchild takes, in notebook order from the first solution cell: the test cells in
        ``graded``, at their places, and the code cells they need (:func:`live_cells`)."""
        steps = []
        graded_at = {i for i, c in enumerate(nb.cells) if _grade_id(c) in graded}
        for i in live_cells(nb.cells, self.prefix, graded_at, self._test_indices(nb)):
            grade_id = _grade_id(nb.cells[i])
            steps.append(("test", grade_id, *self.tests[grade_id]) if grade_id in self.tests
                         else ("cell", i, nb.cells[i].source))
        return {"steps": steps}

    def score_all(self, mutants: list[Mutant]) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
        """{mutant name: ({grade_id: score} for every test cell, {grade_id: report} of the cells re-graded)}."""
        reference = self.reference_scores()
        results = self._run([self._job(self.notebook_of(m), set(self.affected(m))) for m in mutants])
        out = {}
        for mutant, graded in zip(mutants, results):
            out[mutant.name] = ({**reference, **{g: s for g, (s, _) in graded.items()}},
                                {g: r for g, (_, r) in graded.items()})
        return out

    def score(self, mutant: Mutant) -> tuple[dict[str, float], dict[str, str]]:
        return self.score_all([mutant])[mutant.name]


def _run_cells(shell, cells: list[tuple[int, str]]) -> list[str]:
    """Run notebook cells in ``shell`` with their output swallowed; the errors they raised, one line each."""
    errors = []
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for i, source in cells:  # no display here: the inline backend needs a kernel
            outcome = shell.run_cell(re.sub(r"^%matplotlib.*$", "", source, flags=re.M), store_history=False)
            if outcome.error_in_exec is not None:
                errors.append(f"cell {i}: {type(outcome.error_in_exec).__name__}: {outcome.error_in_exec}")
    return errors


def _zygote(setup: list[tuple[int, str]], modules: list[str], folder: str, workers: int, seconds: float, pipe) -> None:
    """Run the notebook's set-up cells once, then serve batches of jobs, each graded in a forked child.

    First the grader modules the test cells import are imported and their ``preload()`` run (the data sets and
    models the checks measure with), so that no fork loads them again."""
    import importlib

    os.chdir(folder)
    os.environ.update(NBGRADER_EXECUTION="autograde", MPLBACKEND="Agg")
    from IPython.core.interactiveshell import InteractiveShell

    from da6401.data.fetch import WITHHELD_ENV

    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)  # a fork cannot use a thread pool its parent started: it would wait forever
    for name in modules:
        module = importlib.import_module(name)
        if hasattr(module, "preload"):
            module.preload()
    shell = InteractiveShell.instance()
    os.environ[WITHHELD_ENV] = "mnist:test,cifar10:test,multi30k:test_2016_flickr"  # as in the sandbox
    errors = _run_cells(shell, setup)
    pipe.send({"errors": errors, "constants": sorted(n for n, v in shell.user_ns.items() if _immutable(v))})
    while (jobs := pipe.recv()) is not None:
        results: list = [None] * len(jobs)
        running: dict[int, tuple[int, str]] = {}
        todo = list(range(len(jobs)))
        while todo or running:
            while todo and len(running) < workers:
                k = todo.pop(0)
                out = tempfile.mktemp(prefix="da6401-mutant-", suffix=".pickle")
                pid = os.fork()
                if pid == 0:
                    try:
                        signal.signal(signal.SIGALRM, signal.SIG_DFL)
                        signal.setitimer(signal.ITIMER_REAL, seconds)
                        result = _grade_job(shell, jobs[k])
                        with open(out, "wb") as f:
                            pickle.dump(result, f)
                    finally:
                        os._exit(0)
                running[pid] = (k, out)
            pid, status = os.wait()
            if pid not in running:
                continue
            k, out = running.pop(pid)
            try:
                with open(out, "rb") as f:
                    results[k] = pickle.load(f)
                os.unlink(out)
            except (OSError, EOFError, pickle.UnpicklingError):
                why = (f"killed after {seconds:g} s" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM
                       else f"the grading process died (status {status})")
                results[k] = {step[1]: (0.0, why) for step in jobs[k]["steps"] if step[0] == "test"}
        pipe.send(results)
    pipe.close()


def _immutable(value, depth: int = 0) -> bool:
    """Whether no method call can change ``value`` (a path, a string, a number, a tuple of them)."""
    if isinstance(value, (str, bytes, int, float, complex, bool, type(None), PurePath)):
        return True
    if type(value) in (tuple, frozenset) and depth < 3:
        return all(_immutable(v, depth + 1) for v in value)
    return False


def _grade_job(shell, job: dict) -> dict[str, tuple[float, str]]:
    """In a fork of the zygote: take the job's steps in order (notebook cells with the test split withheld, test
    cells with it); {grade_id: (score, report)} of its test cells."""
    from da6401.data.fetch import WITHHELD_ENV
    from da6401.student.magic import local_environment
    from da6401.testcell import TestNamespace, report, run_cell

    withheld = os.environ[WITHHELD_ENV]

    def lookup(name):
        try:
            return shell.user_ns[name]
        except KeyError:
            raise NameError(f"name {name!r} is not defined") from None

    errors, results = [], {}
    for step in job["steps"]:
        if step[0] == "cell":
            errors += _run_cells(shell, [step[1:]])
            continue
        _, grade_id, source, points = step
        os.environ.pop(WITHHELD_ENV)  # the tests are the grader's: they measure on the test splits
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = run_cell(source, TestNamespace(local_environment(shell.user_ns), lookup))
        os.environ[WITHHELD_ENV] = withheld
        results[grade_id] = (result.score(points), report(result, points) + "".join(f"(notebook {e})\n" for e in errors)
                             + f"({time.perf_counter() - start:.1f} s)\n")
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m da6401.mutants [--verbose] [--workers N] [assignment/notebook ...]``: grade the corpora and print
    README's table (bugs caught, bugs losing exactly their cells, alternatives at full marks, seconds)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m da6401.mutants", description=main.__doc__)
    parser.add_argument("only", nargs="*", help="corpora to grade, as assignment/notebook (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--verbose", action="store_true", help="also list every mutant that is not as expected")
    args = parser.parse_args(argv)
    rows, status = [], 0
    for assignment, notebook in corpora():
        if args.only and f"{assignment}/{notebook}" not in args.only:
            continue
        start = time.perf_counter()
        _, verdicts = grade_corpus(assignment, notebook, workers=args.workers)
        bugs = [v for v in verdicts if v.mutant.kind == "bug"]
        alternatives = [v for v in verdicts if v.mutant.kind == "alternative"]
        rows.append((f"{assignment}/{notebook}", sum(v.caught for v in bugs), sum(v.as_expected for v in bugs),
                     len(bugs), sum(v.as_expected for v in alternatives), len(alternatives),
                     time.perf_counter() - start))
        for v in verdicts:
            if not v.as_expected:
                status = 1
                if args.verbose:
                    print(f"{v.mutant.kind} {v.mutant.name}: lost {v.lost}, should lose {v.mutant.costs}")
    print("| notebook | bugs caught | bugs losing exactly their cells | honest alternatives at full marks | seconds |")
    print("|---|---|---|---|---|")
    for name, caught, exact, n, alt_ok, n_alt, seconds in rows:
        print(f"| {name} | {caught} / {n} | {exact} / {n} | {alt_ok} / {n_alt} | {seconds:.0f} |")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
