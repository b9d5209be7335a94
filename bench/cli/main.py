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
    """Exit codes: 0 done; 2 bad input (``bench.errors.InputError``: data, options, spec, results
    folder; or a path that does not exist), one line saying what to pass; 1 a bug in cace-bench,
    one line naming it (the traceback with ``--debug``); 130 interrupted."""
    import signal
    import warnings

    from ..data.read import DataWarning
    from ..malloc import keep_freed_memory
    from ..provenance import git_state

    git_state()                     # the code version of this run, read once as it starts
    keep_freed_memory()             # freed tensors reused, not page-faulted anew at every call
    # Ctrl-C (or `timeout -s INT`) stops a run and keeps what it finished, also when this process was
    # started with SIGINT ignored (a background job of a non-interactive shell inherits that)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, *rest, **kw):     # a data warning is a line for the user, not a trace
            if issubclass(category, DataWarning):
                print(f"cace-bench: warning: {message}", file=sys.stderr)
            else:
                show(message, category, *rest, **kw)

        warnings.showwarning = one_line
        return _run(args)


def _run(args) -> int:
    from ..errors import InputError

    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"cace-bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cace-bench: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - anything else is ours, not the user's input
        if args.debug:
            raise
        print(f"cace-bench: internal error (a bug in cace-bench, not in your input): {type(err).__name__}: {err}; "
              "rerun with --debug for the traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
