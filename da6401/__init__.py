"""DA6401 Introduction to Deep Learning: the course's Python package.

- ``da6401.data``: dataset loaders with offline-mirror fetching and checksums.
- ``da6401.grading``: the grading-helper layer every test cell goes through.
- ``da6401.nbgrader_ext``: nbgrader preprocessors switched on in ``nbgrader_config.py``.
- ``da6401.submissions``: assembles reference and faulty submissions for autograding.
"""
