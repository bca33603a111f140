"""What each front door (`adautomix`, adautomix/cli.py; `python -m pipeline`, pipeline/cli.py)
does around its command: parse, set up logging with credentials masked, and turn every error the
user can act on into one line and an exit status."""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import debug_requested, exit_status, one_line
from .redact import redact_handlers


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` with `parser`, whose subcommands set `func`, and run the chosen one
    (run_reporting_errors)."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    redact_handlers()
    return run_reporting_errors(args.func, args)


def run_reporting_errors(func, args: argparse.Namespace) -> int:
    """`func(args)`, with every failure the user can act on as one line on stderr, `error: ...`,
    credentials masked, and its exit status (errors.exit_status: 2 bad input, 1 a failed run;
    130 for Ctrl-C). A bug keeps its traceback, and so does everything under --debug or
    ADAUTOMIX_DEBUG=1."""
    debug = debug_requested(getattr(args, "debug", False))
    try:
        return func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        status = exit_status(exc)
        if status is None or debug:
            raise
        print(one_line(exc), file=sys.stderr)
        return status
