"""Logging as one JSON object per line."""
from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from typing import Any

from gateway.phone import mask


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line; audit records are embedded as objects."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        if record.name == "gateway.audit":
            entry["audit"] = masked_audit(json.loads(message))
        else:
            entry["message"] = message
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def masked_audit(record: dict[str, Any]) -> dict[str, Any]:
    """An audit record for a log line: number, e-mail, names and IP masked (the stream keeps them whole)."""
    masked = dict(record)
    if masked.get("phone_number"):
        masked["phone_number"] = mask(masked["phone_number"])
    for name in ("first_name", "last_name"):
        if masked.get(name):
            masked[name] = masked[name][0] + "***"
    if masked.get("email"):
        local, _, domain = str(masked["email"]).partition("@")
        masked["email"] = f"{local[:1]}***@{domain}"
    if masked.get("client_ip"):
        masked["client_ip"] = _network(masked["client_ip"])
    return masked


def _network(ip: str) -> str:
    """The address's network (/24 for IPv4, /48 for IPv6): enough to tell regions, not users."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "***"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def configure_logging(level: str) -> None:
    """Send the gateway's logs to stderr as JSON lines (once per process)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
