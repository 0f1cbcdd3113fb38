"""Grade a whole class: ``nbgrader autograde`` on every core, or on a Dask cluster.

    python -m da6401.grade autograde ASSIGNMENT [--student ID] [--force] [--workers N] [--scheduler ADDRESS]

Each submission is graded by nbgrader itself (``nbgrader autograde ASSIGNMENT --student ID --force``, the course's
configuration, sandbox and trusted grader included; locally by worker processes that run nbgrader's application
job after job, on a Dask worker by a new nbgrader process per job) in a private copy of the course that holds only what grading
that student needs: the configuration, ``source/ASSIGNMENT`` (nbgrader copies its files over the submission), the
submission, and a gradebook with the course's assignments and cells but no student in it but this one. One
process, this one, writes the course's gradebook: it copies each student's result in as it arrives, then moves the
autograded folder into place, so a student is either recorded whole or not at all, and a rerun grades only the
students without an autograded folder (nbgrader's own rule), unless ``--force``.

- :mod:`da6401.grade.job`: one submission's job: packed here, graded wherever a worker runs;
- :mod:`da6401.grade.worker`: a long-lived local worker process, grading job after job with nbgrader in-process;
- :mod:`da6401.grade.record`: the gradebook: the template a job carries, and copying a job's result in;
- :mod:`da6401.grade.driver`: which submissions, local workers or the cluster, progress and the summary.
"""
