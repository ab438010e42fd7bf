"""`python -m gateway audit export …`: the audit records of a time range to stdout."""
from __future__ import annotations

import argparse
import sys

import redis

from gateway import audit
from gateway.errors import InvalidRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the audit sub-commands."""
    sub = parser.add_subparsers(dest="audit_command", required=True)
    export = sub.add_parser(
        "export", help="write audit records (newest first) to stdout",
        description="Times are RFC 3339 (2026-11-25T00:00:00Z). CSV cells that a spreadsheet would run "
        "as formulas are prefixed with a quote.",
    )
    export.add_argument("--since", required=True, help="RFC 3339 time: records that ended at or after it")
    export.add_argument("--until", required=True, help="RFC 3339 time: records that ended at or before it")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    for name in ("user_id", "to", "status", "channel"):
        export.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"only records with this {name}")


def main(args: argparse.Namespace) -> int:
    """Run an audit sub-command; 0 on success, 2 for a bad filter, 3 when Redis cannot be reached."""
    from gateway import create_app

    given = {name: getattr(args, name) for name in ("since", "until", "user_id", "to", "status", "channel")}
    try:
        filters = audit.parse_filters({k: v for k, v in given.items() if v}, paged=False)
        svc = create_app().extensions["gateway"]
        records = audit.iterate(svc, filters)
        lines = audit.csv_lines(records) if args.format == "csv" else audit.jsonl_lines(records)
        out = sys.stdout
        if args.format == "csv":  # csv's own line ends; no newline translation on top
            out.reconfigure(newline="")  # type: ignore[attr-defined]
        for line in lines:
            out.write(line)
        out.flush()
        return 0
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        print(f"cannot reach Redis: {exc}", file=sys.stderr)
        return 3
