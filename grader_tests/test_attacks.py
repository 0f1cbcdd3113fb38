"""Does every hostile submission score 0 and harm no one, while everyone graded before and after keeps their score?

The attacks are sample submissions of A1 named ``attack_*`` (grader_tests/submissions/a1_mlp/): each is the
untouched release with an attack in its first solution cell, and prints a line starting ``HARM:`` for anything
forbidden it achieves. They are autograded in one run with the honest samples, which sort before
(``alternative_loops``) and after (``reference``, ``untouched``) them, in the course of test_sample_submissions
(their scores are checked there: every attack loses everything).

A few of them (``attack_course_*`` and some forgeries) are also run once *unprotected*, with stock nbgrader's
``Execute`` and the tests in the kernel, in a throwaway course: they only touch that course, so it is safe, and it
shows that each would have worked without the sandbox and the trusted grader.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import os
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, Listener, make_course, nbgrader, processes_with, tree_digest
from da6401.scores import cell_scores, unscored
from da6401.submissions import assemble, spec_names

pytestmark = pytest.mark.slow

ATTACKS = [n for n in spec_names("a1_mlp") if n.startswith("attack_")]
HONEST = [n for n in spec_names("a1_mlp") if not n.startswith("attack_")]
MARKERS = ("da6401-attack", "da6401-course-daemon")
# Attacks whose HARM: lines report what they did inside their own sandbox (their own kernel and its start-up, its
# tmpfs, its own /proc and processes) or only that a forgery is installed. What decides for them is checked
# elsewhere: they score 0 (test_sample_submissions), no process of theirs is left, the course's files are
# unchanged, no one graded after them is touched, and no script of theirs reaches a feedback page.
CONTAINED = {"attack_course_leaves_a_daemon", "attack_daemon_double_fork", "attack_daemon_new_session",
             "attack_daemon_sabotages_next_kernels", "attack_disk_fill", "attack_escape_proc_ptrace_chroot",
             "attack_files_hijack_kernel_launcher", "attack_files_shadow_ipytest", "attack_feedback_xss",
             "attack_infinite_loop", "attack_kernel_refuses_shutdown", "attack_network_loopback_ports",
             "attack_persist_cron_shell_git_hooks", "attack_persist_ipython_startup", "attack_persist_site_packages",
             "attack_read_secrets", "attack_stop_grader", "attack_tamper_instructor_files",
             "attack_unix_sockets_and_other_kernels", "attack_fork_bomb", "attack_spawn_many_processes",
             "attack_rt_plant_staff_tool_configs",  # writes configs in the sandbox's own home, gone with it
             *(n for n in ATTACKS if n.startswith("attack_forge_"))}


def outputs_text(course, student: str, assignment: str = "a1_mlp") -> str:
    """Everything the student's autograded notebook shows (the feedback page's content)."""
    text = []
    for path in (course / "autograded" / student / assignment).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for out in cell.get("outputs", []):
                text.append(str(out.get("text", "")) + str(out.get("evalue", "")) + json.dumps(out.get("data", {})))
    return "\n".join(text)


@pytest.fixture(scope="module")
def protected(autograded):
    course, scores = autograded("a1_mlp")
    return course, scores, json.loads((course / "watch.json").read_text())


def test_the_attack_suite_is_there():
    """Are there attacks for every kind the sandbox issue names, so that a missing folder cannot pass silently?"""
    kinds = ["hidden_tests", "gradebook_read", "gradebook_write", "tamper_other_students", "patch_course_package",
             "network", "daemon", "memory", "processes", "output_flood", "infinite_loop", "kernel_exit", "forge"]
    missing = [k for k in kinds if not any(k in name for name in ATTACKS)]
    assert not missing and len(ATTACKS) >= 40, f"attack kinds without a sample: {missing} ({len(ATTACKS)} attacks)"


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_achieves_nothing_forbidden(protected, attack):
    """Is the attack graded (never left without a row), with no sign of harm done outside its sandbox (no HARM:
    line) and no hidden test in what its notebook shows?"""
    course, scores, _ = protected
    assert attack in scores, f"{attack} was left ungraded: {unscored(course, 'a1_mlp', scores).get(attack)}"
    text = outputs_text(course, attack)
    harm = [line for line in text.splitlines() if line.strip().startswith("HARM:")]
    assert attack in CONTAINED or not harm, f"{attack} reached: {harm[:5]}"
    assert "BEGIN HIDDEN TESTS" not in text and "test_sigmoid_and_grad_match_torch_on_unseen_inputs():" not in text


@pytest.mark.parametrize("student", HONEST)
def test_no_attack_reaches_a_student_graded_after_it(protected, student):
    """Does no honest submission's notebook show a trace of an attack (a planted file, a daemon's output)?"""
    course, _, _ = protected
    text = outputs_text(course, student)
    assert "HARM:" not in text and "da6401-attack" not in text


def test_no_script_from_a_notebook_reaches_its_feedback_page(protected):
    """Do the scripts, event handlers and javascript: links a notebook emits, or writes in a written answer, reach
    neither its autograded copy (which formgrader shows) nor its feedback page in a form a browser would run?"""
    import html as html_lib

    course, _, _ = protected
    page = next((course / "feedback" / "attack_feedback_xss" / "a1_mlp").glob("*.html")).read_text()
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)
    handlers = re.findall(r"""\son\w+\s*=\s*["'][^"']*da6401-xss""", page)
    links = re.findall(r"""(?:href|src)\s*=\s*["']\s*javascript:[^"']*da6401-xss""", page)
    assert not [s for s in scripts if "da6401-xss" in s] and not handlers and not links
    assert "da6401-xss" in html_lib.unescape(page), "the payload should still be shown, as text"
    outputs = outputs_text(course, "attack_feedback_xss")
    assert "application/javascript" not in outputs and "<script>" not in outputs
    # formgrader renders the autograded notebook's written answers as they are: they must be clean too
    path = next((course / "autograded" / "attack_feedback_xss" / "a1_mlp").glob("*.ipynb"))
    answers = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    assert not [a for a in answers if re.search(r"<script|<[^>]*\son\w+\s*=", a)], "a written answer keeps its script"
    # a second payload, written by someone who had not seen the sanitiser: every MIME type, iframes, forms, MathJax
    page = next((course / "feedback" / "attack_rt_feedback_mimebundle_xss" / "a1_mlp").glob("*.html")).read_text()
    live = [s for s in re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S) if "HARM" in s]
    live += re.findall(r"""<[^>]*\son\w+\s*=[^>]*HARM""", page)
    live += re.findall(r"""<[^>]*(?:href|src|action|formaction)\s*=\s*["']?\s*(?:javascript|data:text/html)""", page, flags=re.I)
    assert not live, f"active content left in the feedback page: {live[:3]}"


def test_course_files_and_the_package_are_byte_identical_after_the_attacks(protected):
    """Are source/, release/, nbgrader_config.py and the course package exactly as before autograde?"""
    _, _, watch = protected
    assert watch["unchanged"], f"changed by grading: {watch['changed'][:5]}"
    assert watch["submitted_unchanged"], "a submitted/ file changed while the class was graded"


def test_nothing_reached_the_listeners_on_the_grading_machine(protected):
    """Did no submission connect to the TCP listeners on 127.0.0.1 while the attacks ran?"""
    _, _, watch = protected
    assert watch["connections"] == [], f"connections from submissions: {watch['connections']}"


def test_nothing_is_planted_for_the_staff_to_run_later(protected):
    """Do the persistence attacks (cron entries, shell start-up lines, ld.so.preload, git hooks, IPython start-up
    files, kernelspecs, .pth and sitecustomize files, a user nbgrader_config.py: all written inside their sandbox's
    throwaway home and /tmp) leave no trace on the grading machine?"""
    import site
    import sys

    home = Path.home()
    site_dirs = {Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    candidates = [*Path("/etc/cron.d").glob("*"), Path("/etc/ld.so.preload"), *Path("/etc/profile.d").glob("*"),
                  home / ".bashrc", home / ".profile", home / ".zshrc", home / ".config/systemd/user/da6401-attack.service",
                  *(REPO / ".git/hooks").glob("*"), *(home / ".ipython/profile_default/startup").glob("*"),
                  home / ".jupyter/nbgrader_config.py", *(home / ".local/share/jupyter/kernels").glob("*/kernel.json"),
                  *(Path(sys.prefix) / "share/jupyter/kernels").glob("*/kernel.json"),
                  *(p for d in site_dirs for p in [*d.glob("*.pth"), d / "sitecustomize.py", d / "usercustomize.py"])]
    planted = [p for p in candidates if p.is_file() and "da6401-attack" in p.read_text(errors="replace")]
    logs = sorted(Path("/tmp").glob("da6401-attack*"))  # what a payload that ran outside would have written
    assert not planted and not logs, f"planted: {planted}, payloads that ran: {logs}"


def test_no_process_of_a_submission_outlives_grading(protected):
    """Is every daemon an attack started gone once autograde is done?"""
    leftovers = [p for marker in MARKERS for p in processes_with(marker)]
    assert not leftovers, f"still running after autograde: {leftovers}"


@pytest.mark.parametrize("attack,reason", [
    ("attack_memory_exhaustion", r"memory limit of 3 GiB reached"),
    ("attack_fork_bomb", r"process limit of \d+ reached"),
    ("attack_infinite_loop", r"time limit of 120 s for the notebook reached"),
    ("attack_kernel_exit", r"the kernel exited \(exit status 0\)"),
    ("attack_course_exits_kernel", r"the kernel exited \(exit status 0\)"),
])
def test_a_fault_gives_its_reason_in_the_feedback_and_the_report(protected, attack, reason):
    """Does a submission that hits a limit or ends its kernel get a grade of 0 with the reason, not silence?"""
    from da6401.scores import faults

    course, scores, _ = protected
    assert attack in scores, f"{attack} has no grades at all"
    text = outputs_text(course, attack)
    assert re.search(reason, text), f"{attack}: no {reason!r} in its feedback"
    assert re.search(r"not run: .*so this test cell scores 0", text)
    assert any(re.search(reason, r) for r in faults(course, "a1_mlp").get(attack, [])), "the score report omits it"


def test_output_floods_are_cut(protected):
    """Do submissions that print 100 MB leave autograded notebooks of a few MB, with a line saying output was cut?"""
    course, _, _ = protected
    for attack in ("attack_course_floods_output", "attack_output_flood_print", "attack_output_flood_raw_fds"):
        path = next((course / "autograded" / attack / "a1_mlp").glob("*.ipynb"))
        assert path.stat().st_size < 12 * 2**20, f"{attack}: autograded notebook of {path.stat().st_size:,} bytes"
        assert "[output cut" in outputs_text(course, attack)


# --- the same attacks without the defence ----------------------------------------------------------------
DEMONSTRATED = [n for n in ATTACKS if n.startswith("attack_course_")] + [
    "attack_forge_replace_tests_magic", "attack_forge_input_transformer"]
STOCK_CONFIG_EDITS = [("from nbgrader.preprocessors import (\n", "from nbgrader.preprocessors import (\n    Execute,\n"),
                      ("    SandboxedExecute,\n", "    Execute,\n"),
                      ("c.Autograde.pre_convert_hook", "# c.Autograde.pre_convert_hook")]


@pytest.fixture(scope="module")
def unprotected(protected, tmp_path_factory):
    """A throwaway course graded by stock nbgrader (Execute, tests in the kernel), with the demonstrated attacks."""
    config = (REPO / "nbgrader_config.py").read_text()
    for old, new in STOCK_CONFIG_EDITS:
        assert old in config, f"the stock configuration can no longer be derived: {old!r} not found"
        config = config.replace(old, new, 1)
    course = make_course(tmp_path_factory.mktemp("unprotected"), config)
    nbgrader(course, "generate_assignment", "a1_mlp", "--force")
    # One student at a time, in this order: each attack shows what it does before the ones that destroy what comes
    # after them run (the grade-zeroing one before the forgeries, whose points must stand; the daemon that
    # sabotages later notebooks and the one that empties every other notebook last); the students graded after
    # those are the ones they hurt.
    last = ["attack_course_zeroes_earlier_grades", *[n for n in DEMONSTRATED if n.startswith("attack_forge_")],
            "attack_course_edits_source_notebook", "attack_course_floods_output", "attack_course_exits_kernel",
            "attack_course_leaves_a_daemon", "attack_course_overwrites_other_submissions"]
    order = ["alternative_loops", *[n for n in DEMONSTRATED if n not in last], *last, "reference", "untouched"]
    assert sorted(order) == sorted(["alternative_loops", *DEMONSTRATED, "reference", "untouched"])
    assemble("a1_mlp", order, course)
    before = tree_digest(course / "source")
    listener = Listener()
    logs = []
    try:
        import subprocess

        from conftest import BIN, course_env

        for student in order:
            done = subprocess.run([str(BIN / "nbgrader"), "autograde", "a1_mlp", "--student", student, "--force",
                                   "--log-level=ERROR"], cwd=course, env=course_env(1), capture_output=True, text=True,
                                  timeout=1200)
            logs.append(done.stdout + done.stderr)
    finally:
        listener.close()
    daemons = processes_with("da6401-course-daemon")
    for line in daemons:  # clean up what the unprotected run left
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    result = {"course": course, "scores": cell_scores(course, "a1_mlp"), "connections": listener.connections,
              "daemons": daemons, "source_changed": before != tree_digest(course / "source"), "log": "".join(logs)}
    yield result
    shutil.rmtree(course, ignore_errors=True)


def test_without_the_sandbox_the_course_attacks_do_harm(unprotected, protected):
    """Run unprotected, does each course attack reach what it aims at (so the protected run's clean record means
    something)?"""
    course = unprotected["course"]
    for attack in ("attack_course_reads_hidden_tests", "attack_course_reads_gradebook",
                   "attack_course_zeroes_earlier_grades", "attack_course_edits_source_notebook",
                   "attack_course_connects_to_loopback", "attack_course_leaves_a_daemon"):
        assert "HARM:" in outputs_text(course, attack), f"{attack} did nothing even unprotected"
    assert unprotected["connections"], "no connection reached the listener"
    assert unprotected["daemons"], "no daemon outlived the unprotected run"
    assert unprotected["source_changed"], "the source notebook was not changed"
    early = unprotected["scores"].get("alternative_loops", {})
    assert sum(s or 0 for s, _ in early.values()) == 0, "the grades of the student graded first were not zeroed"
    # what it did to students graded later: their notebooks were emptied, so they were not graded at all
    problems = unscored(course, "a1_mlp", unprotected["scores"])
    assert {"reference", "untouched"} <= set(problems), problems
    assert "attack_course_exits_kernel" in problems, "stock nbgrader graded the notebook that ended its kernel"
    flood = next((course / "autograded" / "attack_course_floods_output" / "a1_mlp").glob("*.ipynb"))
    assert flood.stat().st_size > 90 * 2**20, "the 100 MB of output did not land in the notebook"
    # ... and protected, the same attacks cost the students graded around them nothing
    _, scores, _ = protected
    assert sum(s or 0 for s, _ in scores["alternative_loops"].values()) == 70


@pytest.mark.parametrize("attack", ["attack_forge_replace_tests_magic", "attack_forge_input_transformer"])
def test_without_the_trusted_grader_a_forgery_earns_points(unprotected, protected, attack):
    """Does the forgery score points on the untouched release when tests run in the kernel, and none when they
    run in the grader?"""
    earned = sum(s or 0 for s, _ in unprotected["scores"].get(attack, {}).values())
    assert earned >= 20, f"{attack} earned only {earned} points even with the tests in the kernel"
    _, scores, _ = protected
    assert sum(s or 0 for s, _ in scores[attack].values()) == 0
