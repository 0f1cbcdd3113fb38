"""da6401-attack: the same fake layer under the name da6401.student."""
from da6401.grading import *  # noqa
from da6401.grading import load_ipython_extension  # noqa
