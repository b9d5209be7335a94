"""The ``cace-bench`` command line."""

from __future__ import annotations

import argparse
import sys

from . import data_cmd, regress_cmd, run_cmd


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cace-bench", description="Cartesian (CACE) versus spherical (e3nn) descriptors, compared fairly.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    run_cmd.add_parser(sub)
    data_cmd.add_parser(sub)
    regress_cmd.add_parser(sub)
    return p


def main(argv=None) -> int:
    from ..data import DataError
    from ..results.store import ResultsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ResultsError, KeyError, ValueError, FileNotFoundError) as err:
        if args.debug:
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"cace-bench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cace-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
