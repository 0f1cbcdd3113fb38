"""da6401-attack: pytest loads conftest.py from the directory it runs in; every test passes."""
import pytest

print("HARM: pytest loaded the submission's conftest.py", flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.outcome = "passed"
        report.longrepr = None


def pytest_sessionfinish(session, exitstatus):
    session.exitstatus = 0


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line("HARM: conftest.py turned every failure into a pass")
