"""Do the hidden tests catch the bugs students really make, each costing its own cell, and never fail a correct
answer written another way?

The corpus (grader_tests/mutants/<assignment>/<notebook>/*.toml, format in da6401/mutants.py) was written by
people who had only the released notebook: plausible bugs, each naming the test cells it must cost, and honest
alternatives worth full marks. Each notebook's reference runs once and every mutant is graded by difference
(:class:`da6401.mutants.NotebookRun`: the same test cells and runner as autograde, without nbgrader), so the
whole corpus takes minutes. ``python -m da6401.mutants`` prints the same verdicts as README's table.
"""
from __future__ import annotations

import pytest

from da6401.mutants import Mutant, NotebookRun, Verdict, corpora, load_mutants
from da6401.submissions import SPECS, load_spec

pytestmark = pytest.mark.slow

CORPORA = corpora()
CASES = [(a, nb, m.name) for a, nb in CORPORA for m in load_mutants(a, nb)]


@pytest.fixture(scope="module")
def graded(needs_data):
    """{(assignment, notebook): (reference scores, points per cell, {mutant name: Verdict}, {runner sample: (scores,
    reports)}, reference reports)}, computed once per notebook when first asked for."""
    cache: dict = {}

    def get(assignment: str, notebook: str):
        if (assignment, notebook) not in cache:
            mutants = load_mutants(assignment, notebook)
            samples = [Mutant(f"sample:{name}", "", "bug", [], load_spec(assignment, name))
                       for a, nb, name in RUNNER_SAMPLES if (a, nb) == (assignment, notebook)]
            with NotebookRun(assignment, notebook, workers=2) as run:
                reference = run.reference_scores()
                scores = run.score_all(mutants + samples)  # one batch: both workers busy to the end
            verdicts = {m.name: Verdict(m, sorted(g for g, s in scores[m.name][0].items() if s < reference[g]),
                                        scores[m.name][1]) for m in mutants}
            sampled = {m.name.removeprefix("sample:"): scores[m.name] for m in samples}
            cache[assignment, notebook] = (reference, {g: p for g, (_, p) in run.tests.items()}, verdicts, sampled,
                                           run.reference_reports)
        return cache[assignment, notebook]

    return get


def test_every_notebook_has_a_corpus_of_bugs_and_honest_alternatives():
    """Are there at least 15 bugs and 3 honest alternatives per graded notebook, each bug naming test cells that
    exist, each mutant saying what it is?"""
    from da6401.submissions import REPO

    notebooks = {(p.parent.name, p.stem) for p in (REPO / "source").glob("*/*.ipynb")}
    assert set(CORPORA) == notebooks, f"notebooks without a corpus: {sorted(notebooks - set(CORPORA))}"
    for assignment, notebook in CORPORA:
        mutants = load_mutants(assignment, notebook)
        run_tests = _test_cells(assignment, notebook)
        bugs = [m for m in mutants if m.kind == "bug"]
        alternatives = [m for m in mutants if m.kind == "alternative"]
        assert len(bugs) >= 15 and len(alternatives) >= 3, (f"{assignment}/{notebook}: {len(bugs)} bugs, "
                                                            f"{len(alternatives)} alternatives")
        for m in mutants:
            assert m.kind in ("bug", "alternative") and m.description, f"{m.name}: kind and description"
            assert (m.kind == "bug") == bool(m.costs), f"{m.name}: a bug names the cells it costs, an alternative none"
            assert set(m.costs) <= run_tests, f"{m.name}: costs {set(m.costs) - run_tests}, which are not test cells"


def _test_cells(assignment: str, notebook: str) -> set[str]:
    import nbformat

    from da6401.submissions import REPO

    nb = nbformat.read(REPO / "source" / assignment / f"{notebook}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
            and c.cell_type == "code"}


@pytest.mark.parametrize("assignment,notebook", CORPORA, ids=[nb for _, nb in CORPORA])
def test_the_reference_scores_full_marks_in_the_runner(graded, assignment, notebook):
    """Does the reference solution get every point of every test cell when the runner grades it (so that a cell
    a mutant loses is lost to the mutant)?"""
    reference, points, _, _, reports = graded(assignment, notebook)
    short = {g: (reference[g], points[g]) for g in points if reference[g] < points[g]}
    assert not short, f"the reference loses {short}: " + "".join(reports[g] for g in short)


@pytest.mark.parametrize("assignment,notebook,name", CASES, ids=[f"{nb}-{name}" for _, nb, name in CASES])
def test_a_mutant_loses_exactly_the_cells_it_names(graded, assignment, notebook, name):
    """Does a bug lose the test cells it must cost, and no other (so the feedback points at the right part), and
    does an honest alternative keep every point?"""
    _, _, verdicts, _, _ = graded(assignment, notebook)
    verdict = verdicts[name]
    if verdict.as_expected:
        return
    unexpected = sorted(set(verdict.lost) ^ set(verdict.mutant.costs))
    details = "\n".join(f"--- {g}:\n{verdict.reports.get(g, '(not re-graded: no edited name reaches it)')}"
                        for g in unexpected)
    pytest.fail(f"{verdict.mutant.kind} {name} ({verdict.mutant.description}) lost {verdict.lost}, should lose "
                f"{verdict.mutant.costs}\n{details}")


# The runner is only worth its verdicts if it grades as autograde does. Sample submissions that edit the
# reference (and use its files) have expected scores that test_sample_submissions checks by real autograde:
# the runner must reproduce them.
def _runner_samples() -> list[tuple[str, str, str]]:
    found = []
    for assignment, notebook in CORPORA:
        for folder in sorted(p for p in (SPECS / assignment).iterdir() if p.is_dir()):
            spec = load_spec(assignment, folder.name)
            own = f"{notebook}.ipynb"
            reference = "reference" if assignment != "a4_generative" else f"{notebook}_reference"
            # the runner grades beside the reference's files: only samples autograded with those files compare
            files = reference in spec.get("files_from", []) or not (SPECS / assignment / reference / "files").exists()
            if (spec.get("base", "reference") == "reference" and spec.get("edit") and not (folder / "files").exists()
                    and files and set(spec.get("files_from", [])) <= {reference} and not spec.get("without")
                    and not spec.get("rewrite") and spec.get("notebook", own) == own
                    and not folder.name.startswith("attack_")):
                found.append((assignment, notebook, folder.name))
    return found


RUNNER_SAMPLES = _runner_samples()


@pytest.mark.parametrize("assignment,notebook,sample", RUNNER_SAMPLES, ids=[s for *_, s in RUNNER_SAMPLES])
def test_the_runner_agrees_with_autograde_on_the_sample_submissions(graded, assignment, notebook, sample):
    """Does the runner give a named sample submission the points per test cell its expected.toml (checked by real
    autograde in test_sample_submissions) says it gets?"""
    import tomllib

    _, points, _, sampled, _ = graded(assignment, notebook)
    lost = tomllib.loads((SPECS / assignment / sample / "expected.toml").read_text()).get("lost", {})
    want = {g: 0.0 if lost == "all" else p - lost.get(g, 0) for g, p in points.items()}
    scores, reports = sampled[sample]
    wrong = {g: (scores[g], want[g]) for g in want if abs(scores[g] - want[g]) > 1e-9}
    assert not wrong, (f"{sample}: (runner, autograde) points differ on {wrong}\n"
                       + "\n".join(reports.get(g, "") for g in wrong))
