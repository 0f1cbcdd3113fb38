"""Is each kernel sandboxed as documented, and does autograde refuse to run without a sandbox?

These run one small notebook through the sandbox directly (seconds, not a whole course); the attack suite
(test_attacks.py) autogrades hostile submissions end to end.
"""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, REPO, course_env, make_course
from da6401.sandbox import Limits, Sandbox, SandboxLimits, SandboxUnavailable
from da6401.sandbox.bwrap import _copy_submission

PROBE = textwrap.dedent('''
    import json, os, socket, subprocess, sys
    facts = {"uid": os.getuid(), "cwd": os.getcwd(), "files": sorted(os.listdir(".")), "pid": os.getpid()}
    facts["repo_source"] = os.path.exists(%(source)r)
    facts["repo_gradebook_dir"] = os.path.exists(%(repo)r + "/nbgrader_config.py")
    facts["grader_package"] = os.path.exists(%(repo)r + "/da6401/grader")
    facts["home_entries"] = os.listdir("/home")
    facts["env"] = sorted(os.environ)
    try:
        socket.create_connection(("127.0.0.1", 22), timeout=2); facts["loopback"] = "connected"
    except OSError as e:
        facts["loopback"] = type(e).__name__
    try:
        open(%(repo)r + "/da6401/__init__.py", "a").close(); facts["package_writable"] = True
    except OSError:
        facts["package_writable"] = False
    try:  # root owns it, mode 0644: writable by a process that is root on the host, caps or not
        with open("/proc/sys/kernel/core_pattern") as f:
            same = f.read()
        with open("/proc/sys/kernel/core_pattern", "w") as f:
            f.write(same)
        facts["host_sysctl"] = "written"
    except OSError as e:
        facts["host_sysctl"] = type(e).__name__
    facts["devices"] = {}
    for device in ("/dev/null", "/dev/urandom", "/dev/zero"):
        try:
            with open(device, "rb") as f:
                facts["devices"][device] = len(f.read(4))
        except OSError as e:
            facts["devices"][device] = type(e).__name__
    import torch
    facts["torch"] = float(torch.ones(3).sum()) + 0 * float(torch.randn(2).sum())
    from da6401.data import load_mnist
    facts["train"] = load_mnist("train")[0].shape[0]
    try:
        load_mnist("test"); facts["test"] = "loaded"
    except Exception as e:
        facts["test"] = type(e).__name__
    print("FACTS" + json.dumps(facts))
''')


@pytest.fixture(scope="module")
def inside(tmp_path_factory, needs_data):
    """What a kernel sees from inside the sandbox, as nbgrader's execution would start it."""
    from da6401.nbgrader_ext import SandboxedExecute

    submission = tmp_path_factory.mktemp("submission")
    (submission / "weights.pt").write_bytes(b"not really")
    (submission / "mine.ipynb").write_text("{}")
    (submission / "nbgrader_config.py").write_text("c = 1\n")
    os.symlink(REPO / "nbgrader_config.py", submission / "link_to_config.py")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        PROBE % {"source": str(REPO / "source"), "repo": str(REPO)})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    executor = SandboxedExecute(timeout=120)
    executor.preprocess(nb, {"metadata": {"path": str(submission)}, "nbgrader": {"assignment": "probe"}})
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "FACTS" in text, f"the probe did not run: {nb.cells[0].outputs}"
    import json

    return json.loads(text.split("FACTS", 1)[1].splitlines()[0])


def test_the_kernel_works_on_its_own_copy_of_the_submission_without_notebooks_or_links(inside):
    """Does the kernel start in /home/student/<assignment> with the submitted files, but not its notebook (which
    holds the hidden tests once autograde restored them), nbgrader_config.py or a symlink?"""
    assert inside["cwd"] == "/home/student/probe"
    assert inside["files"] == ["weights.pt"]


def test_the_kernel_sees_nothing_of_the_course(inside):
    """Are the course's source/, its config and the grader's package absent, the package read-only?"""
    assert not inside["repo_source"] and not inside["repo_gradebook_dir"] and not inside["grader_package"]
    assert not inside["package_writable"]
    assert inside["home_entries"] == ["student"]


def test_the_kernel_runs_unprivileged_without_network_or_the_graders_environment(inside):
    """Is the kernel a non-root uid in its own PID and network namespaces, with only the environment it is given?"""
    assert inside["uid"] == 1000 and inside["pid"] < 10
    assert inside["loopback"] in ("ConnectionRefusedError", "OSError", "TimeoutError")
    assert "DA6401_DATA_MIRROR" not in inside["env"] and "PATH" in inside["env"]


def test_the_kernel_is_not_root_on_the_host(inside):
    """Can the kernel not write what root owns on the host (the crash handler in /proc/sys, which runs as root)?"""
    assert inside["host_sysctl"] == "PermissionError"


def test_the_kernel_can_use_the_devices_and_torch(inside):
    """Can the kernel read /dev/null, /dev/urandom and /dev/zero (torch opens /dev/urandom) and run torch?"""
    assert inside["devices"] == {"/dev/null": 0, "/dev/urandom": 4, "/dev/zero": 4}
    assert inside["torch"] == 3.0


def test_the_kernel_gets_the_training_data_but_not_the_test_split(inside):
    """Does the kernel load MNIST's training split, while the grader withholds its public test split?"""
    assert inside["train"] == 60000
    assert inside["test"] == "DatasetWithheldError"


def test_the_copy_never_follows_a_symlink(tmp_path):
    """Is a symlink in a submission (to the gradebook, say) left out of the kernel's copy, not followed?"""
    (tmp_path / "in").mkdir()
    secret = tmp_path / "secret.db"
    secret.write_text("grades")
    os.symlink(secret, tmp_path / "in" / "data.db")
    (tmp_path / "in" / "sub").mkdir()
    os.symlink(secret, tmp_path / "in" / "sub" / "deep.db")
    (tmp_path / "in" / "kept.txt").write_text("mine")
    _copy_submission(tmp_path / "in", tmp_path / "out", ["*.ipynb"])
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == ["kept.txt", "sub"]


def test_limits_per_assignment_override_the_defaults_and_reject_unknown_names():
    """Does a per-assignment override change only its limits, and a misspelt limit fail loudly?"""
    limits = SandboxLimits(per_assignment={"a2_cnn": {"notebook_seconds": 1200}})
    assert limits.for_assignment("a2_cnn").notebook_seconds == 1200
    assert limits.for_assignment("a1_mlp") == Limits(**{**Limits().__dict__, "notebook_seconds": limits.notebook_seconds})
    with pytest.raises(ValueError, match="unknown limits"):
        SandboxLimits(per_assignment={"a1_mlp": {"memory_gb": 2}}).for_assignment("a1_mlp")


@pytest.mark.parametrize("bwrap,reason", [("/nonexistent/bwrap", "is not installed"),
                                          ("fails", "No permissions to create new namespace")])
def test_autograde_fails_closed_without_bubblewrap(tmp_path, bwrap, reason):
    """Without a working bubblewrap, does autograde stop with one message (the package, the kernel setting, the
    one flag) and grade nothing, rather than run submissions unsandboxed?"""
    if bwrap == "fails":
        fake = tmp_path / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
        fake.chmod(0o755)
        bwrap = str(fake)
    course = make_course(tmp_path / "course")
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.Sandbox.bwrap = {bwrap!r}\n")
    env = course_env()
    subprocess.run([str(BIN / "nbgrader"), "generate_assignment", "a1_mlp", "--force"], cwd=course, env=env,
                   capture_output=True, check=True)
    from da6401.submissions import assemble

    assemble("a1_mlp", ["untouched"], course)
    done = subprocess.run([str(BIN / "nbgrader"), "autograde", "a1_mlp"], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert reason in out and "apt-get install bubblewrap" in out and "unprivileged_userns_clone" in out
    assert "c.Sandbox.run_unsandboxed = True" in out and "nothing was graded" in out
    assert not (course / "autograded").exists() or not any((course / "autograded").iterdir())


def test_the_probe_raises_a_system_exit_so_that_nbgrader_cannot_carry_on():
    """Is the fail-closed error a SystemExit (nbgrader catches every Exception per student and moves on)?"""
    assert issubclass(SandboxUnavailable, SystemExit) and not issubclass(SandboxUnavailable, Exception)
    with pytest.raises(SandboxUnavailable, match="is not installed"):
        Sandbox(bwrap="/nonexistent/bwrap").probe()
    Sandbox(bwrap="/nonexistent/bwrap", run_unsandboxed=True).probe()  # the one explicit way round it
