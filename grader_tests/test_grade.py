"""Does ``python -m da6401.grade autograde`` grade a class as ``nbgrader autograde`` does: the same gradebook, on
local workers, on a real Dask cluster and with a real PostgreSQL gradebook, and does it survive a lost worker and
a killed run?"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, REPO, TEST_LIMITS, course_env, make_course, nbgrader
from da6401.submissions import assemble

pytestmark = pytest.mark.slow

HONEST = ["reference", "relu_grad_mask_inverted", "untouched", "attack_course_exits_kernel"]
BROKEN = ["truncated_notebook", "test_cell_deleted", "notebook_missing"]
LATE = "2031-01-01 09:00:00 UTC"  # after any due date: nbgrader records the timestamp


def class_course(path: Path, db_url: str | None = None) -> Path:
    """An A1 course with honest, faulty and broken submissions (the same in every course made here)."""
    config = None
    if db_url:
        config = (REPO / "nbgrader_config.py").read_text() + TEST_LIMITS + f"\nc.CourseDirectory.db_url = {db_url!r}\n"
    course = make_course(path, config)
    nbgrader(course, "generate_assignment", "a1_mlp", "--force")
    assemble("a1_mlp", HONEST, course)
    (course / "submitted" / "reference" / "a1_mlp" / "timestamp.txt").write_text(LATE)
    release = (course / "release" / "a1_mlp" / "mlp_backprop.ipynb").read_bytes()
    folders = {name: course / "submitted" / name / "a1_mlp" for name in BROKEN}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders["truncated_notebook"] / "mlp_backprop.ipynb").write_bytes(release[: len(release) // 2])
    deleted = nbformat.reads(release.decode(), as_version=4)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_sigmoid"]
    nbformat.write(deleted, folders["test_cell_deleted"] / "mlp_backprop.ipynb")
    (folders["notebook_missing"] / "my_notes.txt").write_text("I forgot to upload the notebook\n")
    return course


def gradebook(course: Path, db_url: str | None = None) -> dict:
    """Everything nbgrader's gradebook holds about A1's submissions, by student, notebook and cell (no ids)."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url or f"sqlite:///{course / 'gradebook.db'}", "da6401") as gb:
        for sub in gb.assignment_submissions("a1_mlp"):
            out[sub.student_id, "timestamp"] = str(sub.timestamp)
            for nb in sub.notebooks:
                out[sub.student_id, nb.name] = (nb.flagged, nb.late_submission_penalty, nb.needs_manual_grade)
                for g in nb.grades:
                    out[sub.student_id, nb.name, g.name] = (g.auto_score, g.manual_score, g.extra_credit,
                                                           g.needs_manual_grade)
                for c in nb.comments:
                    out[sub.student_id, nb.name, c.name, "comment"] = (c.auto_comment, c.manual_comment)
    return out


def cell_outputs(course: Path) -> dict:
    """{(student, test cell): its outputs' text} of every autograded notebook."""
    out = {}
    for path in sorted(course.glob("autograded/*/a1_mlp/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if grade_id.startswith("test_"):
                out[path.parts[-3], grade_id] = [str(o.get("text", "")) + str(o.get("evalue", "")) for o in cell.outputs]
    return out


def grade(course: Path, *args: str, timeout: int = 1800, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "python"), "-m", "da6401.grade", "autograde", "a1_mlp", *args], cwd=course,
                          env=course_env(), capture_output=True, text=True, timeout=timeout, **popen)


@pytest.fixture(scope="module")
def serial(tmp_path_factory, needs_data):
    """The class graded by plain ``nbgrader autograde`` (one notebook after another): what every run must match."""
    course = class_course(tmp_path_factory.mktemp("serial"))
    subprocess.run([str(BIN / "nbgrader"), "autograde", "a1_mlp", "--force"], cwd=course, env=course_env(1),
                   capture_output=True, text=True, timeout=1800)
    return course, gradebook(course), cell_outputs(course), {p.parts[-2] for p in course.glob("autograded/*/a1_mlp")}


def scores_of(book: dict, student: str) -> float:
    return sum(v[0] or 0 for k, v in book.items() if k[0] == student and len(k) == 3)


def test_the_serial_run_has_something_to_compare(serial):
    """Does the serial run grade the honest students differently (so that equal gradebooks mean something), and
    record the late timestamp?"""
    _, book, outputs, _ = serial
    assert scores_of(book, "reference") == 70 and 0 < scores_of(book, "relu_grad_mask_inverted") < 70
    assert scores_of(book, "untouched") == 0
    assert book["reference", "timestamp"].startswith("2031-01-01 09:00:00")
    assert any("time limit" in text or "kernel" in text for text in outputs["attack_course_exits_kernel", "test_sigmoid"])


def test_two_local_workers_leave_the_gradebook_a_serial_autograde_leaves(serial, tmp_path):
    """With two workers, are the scores, comments, flags, late penalties and timestamps of every student the
    serial run's, the test cells' outputs the same, and the broken submissions reported by name?"""
    course = class_course(tmp_path / "parallel")
    done = grade(course, "--workers", "2")
    assert done.returncode == 1, done.stdout + done.stderr  # broken submissions are failures, reported
    _, book, outputs, _ = serial
    assert gradebook(course) == book
    assert cell_outputs(course) == outputs
    graded = serial[3]  # the students nbgrader autograded (the others it could not)
    assert {p.parts[-2] for p in course.glob("autograded/*/a1_mlp")} == graded
    assert f"graded {len(graded)}, failed {len(HONEST) + len(BROKEN) - len(graded)}," in done.stdout, done.stdout
    assert "FAILED truncated_notebook" in done.stdout
    assert "SAWarning" not in done.stderr and "raw write" not in done.stderr


def test_a_rerun_grades_only_what_is_missing_and_force_regrades(serial, tmp_path):
    """Killed mid-run (the whole process group, SIGKILL), does a rerun grade exactly the students without an
    autograded folder, and --force all of them, ending with the serial gradebook?"""
    course = class_course(tmp_path / "resumed")
    run = subprocess.Popen([str(BIN / "python"), "-m", "da6401.grade", "autograde", "a1_mlp", "--workers", "1"],
                           cwd=course, env=course_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    deadline = time.monotonic() + 900
    while not list(course.glob("autograded/*/a1_mlp")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    first = {p.parts[-2] for p in course.glob("autograded/*/a1_mlp")}
    assert first and len(first) < len(HONEST) + 1, f"the run was not cut in the middle: {first}"
    done = grade(course)
    assert f"skipped {len(first)}" in done.stdout, done.stdout
    assert gradebook(course) == serial[1]
    again = grade(course, "--force", "--student", "untouched")
    assert again.returncode == 0 and "graded 1," in again.stdout and "skipped 0" in again.stdout, again.stdout
    assert gradebook(course) == serial[1]


def test_a_grading_process_killed_mid_notebook_is_graded_again(serial, tmp_path):
    """When the worker process grading one student is killed while its kernel runs, is that student graded
    again (by a new worker) and every student recorded as in the serial run?"""
    course = class_course(tmp_path / "killed")
    for name in ("truncated_notebook", "test_cell_deleted", "notebook_missing"):
        shutil.rmtree(course / "submitted" / name)
    run = subprocess.Popen([str(BIN / "python"), "-m", "da6401.grade", "autograde", "a1_mlp", "--workers", "2"],
                           cwd=course, env=course_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 900
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        for pid in _children(run.pid):  # the driver's worker processes, each in its job's course while grading
            try:
                course_copy = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if (course_copy / "autograded" / "reference" / "a1_mlp" / "mlp_mnist.npz").exists():
                time.sleep(2)  # nbgrader has copied the files and started the notebook's kernel
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.1)
    out, err = run.communicate(timeout=1800)
    assert killed is not None, "no grading process was found to kill"
    assert "reference: the grading process was killed (signal 9); grading it again" in err, err[-3000:]
    assert run.returncode == 0, out + err
    expected = {k: v for k, v in serial[1].items() if k[0] in HONEST}
    assert gradebook(course) == expected


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


@pytest.fixture
def dask_cluster(tmp_path):
    """A real ``dask scheduler`` and two ``dask worker`` processes on loopback; yields the scheduler's address."""
    pytest.importorskip("distributed")
    scheduler_file = tmp_path / "scheduler.json"
    env = course_env(1)
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(scheduler_file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--name", name, "--no-dashboard", "--local-directory", str(tmp_path / name)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_a_dask_cluster_of_two_workers_leaves_the_serial_gradebook(serial, dask_cluster, tmp_path):
    """Sent to a real scheduler and two worker processes, is every submission graded (on both workers) and the
    gradebook the serial run's?"""
    course = class_course(tmp_path / "dask")
    done = grade(course, "--scheduler", dask_cluster)
    assert "FAILED truncated_notebook" in done.stdout, done.stdout + done.stderr
    assert gradebook(course) == serial[1]
    assert cell_outputs(course) == serial[2]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server on a Unix socket in a private folder, run as the ``postgres`` user when we are
    root; yields a database URL for nbgrader."""
    import tempfile

    pgbin = _postgres_bin()
    if pgbin is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have PostgreSQL (.ci/run installs the Debian package postgresql)")
        pytest.skip("PostgreSQL is not installed")
    home = Path(tempfile.mkdtemp(prefix="da6401-postgres-"))  # not under pytest's 0700 folders: postgres reads it
    data, sockets = home / "data", home / "sockets"
    sockets.mkdir()
    prefix = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        prefix = ["runuser", "-u", "postgres", "--"]
        for path in (home, sockets):
            shutil.chown(path, "postgres")

    def pg(*args):
        return subprocess.run(prefix + [str(pgbin / args[0]), *args[1:]], capture_output=True, text=True, check=True)
    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
    pg("pg_ctl", "-D", str(data), "-w", "-o", f"-k {sockets} -c listen_addresses=''", "-l", str(home / "pg.log"),
       "start")
    try:
        pg("createdb", "-h", str(sockets), "-U", "postgres", "gradebook")
        yield f"postgresql+psycopg2://postgres@/gradebook?host={sockets}"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def test_a_postgresql_gradebook_gets_the_serial_records_from_two_workers(serial, postgres, tmp_path):
    """With the gradebook in a real PostgreSQL server (nbgrader's db_url), do two workers leave it as the serial
    run leaves its SQLite gradebook?"""
    course = class_course(tmp_path / "postgres", db_url=postgres)
    assert not (course / "gradebook.db").exists(), "the course did not use PostgreSQL"
    done = grade(course, "--workers", "2")
    assert "FAILED truncated_notebook" in done.stdout, done.stdout + done.stderr
    assert gradebook(course, postgres) == serial[1]
