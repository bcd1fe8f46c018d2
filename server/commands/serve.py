"""`billing-oss serve`: placeholder until the foundation lands."""

from __future__ import annotations

import argparse
from typing import Any


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("serve", help="start the server")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return 0
