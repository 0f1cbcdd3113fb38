"""``python -m da6401.grade autograde ASSIGNMENT [--student ID] [--force] [--workers N] [--scheduler ADDRESS]``

Run from the course's root, like ``nbgrader autograde``; other ``--Class.trait=value`` arguments go to nbgrader
(``--CourseDirectory.db_url=postgresql+psycopg2://...``). Exit status 1 if a submission could not be graded.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from da6401.grade.driver import Course, autograde

    parser = argparse.ArgumentParser(prog="python -m da6401.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("autograde", help="what `nbgrader autograde` does, on every core or a Dask cluster")
    grade.add_argument("assignment")
    grade.add_argument("--student", default="*", help="a student id or a pattern (nbgrader's --student)")
    grade.add_argument("--force", action="store_true", help="regrade submissions that are already autograded")
    grade.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    grade.add_argument("--scheduler", default=None, help="a Dask scheduler, tcp://HOST:8786, instead of local workers")
    grade.add_argument("--threads", type=int, default=None,
                       help="threads per notebook's kernel (default: cores / workers here, 1 on a cluster)")
    args, nbgrader_args = parser.parse_known_args(argv)
    course = Course.load(nbgrader_args)
    try:
        summary = autograde(course, args.assignment, args.student, args.force, args.workers, args.scheduler,
                            args.threads)
    except KeyboardInterrupt:
        print("interrupted: the students graded so far are recorded; the same command grades the rest")
        return 130
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
