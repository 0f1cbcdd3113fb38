"""Command line for the data layer: fetch datasets into the data root, or show where things are."""
import argparse
import sys

from .fetch import DATASETS, ChecksumError, DatasetMissingError, data_root, fetch, mirror_root

EXAMPLES = """examples:
  python -m da6401.data where                    # print the data root and the mirror
  python -m da6401.data fetch                    # fetch all datasets
  python -m da6401.data fetch mnist multi30k     # fetch just these
  DA6401_DATA_MIRROR=/work/shared/data python -m da6401.data fetch cifar10   # offline, from the mirror
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m da6401.data", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="fetch datasets (all if none named)")
    fetch_cmd.add_argument("names", nargs="*", metavar="name", help=f"one of {', '.join(DATASETS)}")
    commands.add_parser("where", help="print the data root and the mirror")
    args = parser.parse_args(argv)

    if args.command == "where":
        mirror = mirror_root()
        print(f"data root: {data_root()}")
        print(f"mirror:    {mirror if mirror else 'none (DA6401_DATA_MIRROR is unset)'}")
        return 0
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        fetch_cmd.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    for name in args.names or DATASETS:
        try:
            print(f"{name}: {fetch(name)}")
        except (DatasetMissingError, ChecksumError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
