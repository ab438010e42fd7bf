"""`python -m gateway tokens …`: import OATH TOTP hardware tokens and assign them to users."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import redis

from gateway import methods
from gateway.errors import InvalidRequest
from gateway.tokens import Decryption, FileFormat, TokenFileError, read_tokens


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the tokens sub-commands."""
    sub = parser.add_subparsers(dest="tokens_command", required=True)
    imp = sub.add_parser(
        "import", help="import TOTP tokens from a CSV or PSKC file (all or nothing)",
        description="CSV: serial, base-32 secret, time step[, digits[, user]] (a header row may name the "
        "columns: serial, secret, step, digits, user, algorithm). PSKC: RFC 6030, optionally encrypted.",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--user", help="assign the file's single token to this user id")
    imp.add_argument("--format", choices=[f.value for f in FileFormat], help="default: from the name or content")
    secret = imp.add_mutually_exclusive_group()
    secret.add_argument("--password", help="PSKC: the password the keys are encrypted with (PBKDF2)")
    secret.add_argument("--password-file", type=Path, help="PSKC: read the password from this file's first line")
    secret.add_argument("--key", help="PSKC: the pre-shared encryption key, in hex")
    imp.add_argument("--replace", action="store_true", help="overwrite tokens already imported with these serials")
    assign = sub.add_parser("assign", help="assign an imported token to a user")
    assign.add_argument("serial")
    assign.add_argument("user")
    unassign = sub.add_parser("unassign", help="take a token back from its user (it can be assigned again)")
    unassign.add_argument("serial")


def main(args: argparse.Namespace) -> int:
    """Run a tokens sub-command; 0 on success, 1 when refused, 3 when Redis cannot be reached."""
    from gateway import create_app

    try:
        tokens = []
        if args.tokens_command == "import":  # the whole file is checked before Redis is touched
            file_format = FileFormat(args.format) if args.format else None
            tokens = read_tokens(args.file, args.user, _decryption(args), file_format)
        svc = create_app().extensions["gateway"]
        if args.tokens_command == "import":
            count = methods.import_tokens(svc, tokens, replace=args.replace)
            print(_summary(args.file, count, [t.user_id for t in tokens]))
        else:
            print(methods.assign_token(svc, args.serial, args.user if args.tokens_command == "assign" else None))
        return 0
    except TokenFileError as exc:
        print(f"{args.file}: nothing was imported:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (methods.TokenConflict, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        print(f"cannot reach Redis: {exc}", file=sys.stderr)
        return 3


def _decryption(args: argparse.Namespace) -> Decryption:
    """The PSKC decryption options; ValueError for a key that is not hex or an unreadable file."""
    if args.key is not None:
        try:
            return Decryption(key=bytes.fromhex(args.key))
        except ValueError:
            raise ValueError("--key must be the encryption key in hex") from None
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--password-file: {exc.strerror}") from None
        return Decryption(password=lines[0] if lines else "")
    return Decryption(password=args.password)


def _summary(file: Path, count: int, users: list[str | None]) -> str:
    """One line for the operator: how many tokens, and to whom they went."""
    assigned = Counter(u for u in users if u)
    owners = ", ".join(sorted(assigned))
    parts = [f"imported {count} token(s) from {file}"]
    parts.append(f"{sum(assigned.values())} assigned ({owners})" if assigned else "none assigned")
    if len(users) - sum(assigned.values()) and assigned:
        parts.append(f"{len(users) - sum(assigned.values())} unassigned")
    return "; ".join(parts)
