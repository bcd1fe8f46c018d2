"""`billing-oss` console script: parses the verb and hands over to its module.

Exit statuses (DESIGN.md §6): 0 ok, 1 bad input, 2 usage or configuration error,
3 partial success. A ``BillingError`` becomes one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from billing_oss.core.errors import BillingError
from billing_oss.server.commands import VERB_MODULES

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="billing-oss",
        description="Telecom mediation and rating server: collect, decode, rate and bill usage.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()
    except BillingError as exc:
        print(f"billing-oss {args.verb}: {exc.message}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:  # a defect: still one line, the traceback only when asked
        return _unexpected(args, exc)
    return status


def _reader_gone() -> int:
    """stdout's reader left (``| head``): not an error. Point stdout at /dev/null so the
    interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _unexpected(args: argparse.Namespace, exc: Exception) -> int:
    if getattr(args, "log_level", None) == "debug":
        traceback.print_exception(exc)
    print(f"billing-oss {args.verb}: internal error: {type(exc).__name__}: {exc} "
          "(--log-level debug shows where)", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
