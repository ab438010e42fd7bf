"""The bench's units of work: one request (or one whole verification) each, timed by step."""
from __future__ import annotations

import time
from urllib.parse import quote

from bench.load import Client, Timer, expect



def gw_start(clients: dict[str, Client], timer: Timer, number: str) -> tuple[str, str]:
    """Start a verification at the gateway: (id, number)."""
    body = timer.step("start", lambda: expect(*clients["gw"].request("POST", "/v1/verifications", {"to": number}), 201))
    return body["id"], number


def gw_start_identified(clients: dict[str, Client], timer: Timer, number: str) -> tuple[str, str]:
    """Start a verification naming its user and client address (each its own, as in a login burst)."""
    n = int(number[-7:])
    body = {"to": number, "user_id": f"user-{n:07d}", "client_ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
    body = timer.step("start", lambda: expect(*clients["gw"].request("POST", "/v1/verifications", body), 201))
    return body["id"], number


def gw_check(clients: dict[str, Client], timer: Timer, item: tuple[str, str]) -> bool:
    """Check a code at the gateway; it must approve."""
    vid, code = item
    body = timer.step("check", lambda: expect(*clients["gw"].request(
        "POST", f"/v1/verifications/{vid}/check", {"code": code}), 200))
    if not body.get("valid"):
        raise AssertionError(f"{vid} not approved: {body.get('status')}")
    return True


def gw_e2e(clients: dict[str, Client], timer: Timer, number: str) -> bool:
    """Start, wait for the SMS at the fake Twilio, check: one whole verification."""
    began = time.perf_counter()
    vid, _ = gw_start(clients, timer, number)
    code = timer.step("deliver", lambda: expect(*clients["fake"].request(
        "GET", f"/_bench/code?to={quote(number)}&wait=30"), 200))["code"]
    gw_check(clients, timer, (vid, code))
    timer.latencies.setdefault("e2e", []).append(time.perf_counter() - began)
    return True


def ref_start(clients: dict[str, Client], timer: Timer, item: tuple[str, str]) -> tuple[str, str]:
    """Start a verification at the reference: (id, code)."""
    number, code = item
    body = timer.step("start", lambda: expect(*clients["ref"].request("POST", "/start", {"to": number, "code": code}), 201))
    return body["id"], code


def ref_check(clients: dict[str, Client], timer: Timer, item: tuple[str, str]) -> bool:
    """Check a code at the reference; it must approve."""
    vid, code = item
    body = timer.step("check", lambda: expect(*clients["ref"].request("POST", "/check", {"id": vid, "code": code}), 200))
    if not body.get("valid"):
        raise AssertionError(f"{vid} not approved: {body.get('status')}")
    return True
