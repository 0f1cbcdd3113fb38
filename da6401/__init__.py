"""DA6401 Introduction to Deep Learning: the course's Python package, laid out along the trust boundary.

Runs in the student's kernel (installed by students; the only course code the sandbox lets a kernel import):

- ``da6401.student``: the ``%%tests`` magic, the visible checks, checkpoint helpers, the grader's agent.
- ``da6401.data``: dataset loaders with offline-mirror fetching and checksums.
- ``da6401.testcell``, ``da6401.wire``, ``da6401.text``, ``da6401.devices``: shared by both sides.

Runs only in the trusted grader (never installed for students, invisible to the sandbox):

- ``da6401.grader``: hidden-test checks, oracles, judges; the channel that reaches the student's kernel.

The sandbox and the nbgrader wiring:

- ``da6401.sandbox``: bubblewrap, cgroups and limits for each submission's kernel.
- ``da6401.nbgrader_ext``: nbgrader preprocessors and plugins switched on in ``nbgrader_config.py``.

Course tooling: ``da6401.submissions`` (sample submissions), ``da6401.scores``, ``da6401.bench``.
"""
