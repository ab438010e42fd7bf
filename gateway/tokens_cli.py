"""`python -m gateway tokens import FILE`: OATH token import (lands with issue 6)."""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the tokens sub-commands."""
    sub = parser.add_subparsers(dest="tokens_command", required=True)
    imp = sub.add_parser("import", help="import TOTP tokens from a CSV or PSKC file")
    imp.add_argument("file")
    imp.add_argument("--user", help="assign every imported token to this user id")


def main(args: argparse.Namespace) -> int:
    """Run a tokens sub-command."""
    print("token import is not available yet", file=sys.stderr)
    return 1
