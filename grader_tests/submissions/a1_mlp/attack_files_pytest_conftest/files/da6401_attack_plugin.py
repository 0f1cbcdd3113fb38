"""da6401-attack: a pytest plugin named in pytest.ini; replaces every test by one that passes."""
print("HARM: pytest loaded the submission's plugin da6401_attack_plugin", flush=True)


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        item.runtest = lambda: None


def pytest_sessionfinish(session, exitstatus):
    session.exitstatus = 0
