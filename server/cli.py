"""`billing-oss` console script: parses the verb and hands over to its module.

Exit statuses (DESIGN.md §6): 0 ok, 1 bad input, 2 usage or configuration error,
3 partial success. A ``BillingError`` becomes one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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
    except BillingError as exc:
        print(f"billing-oss {args.verb}: {exc.message}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
