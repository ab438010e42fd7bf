"""API keys and their scopes: who is calling, and whether a route lets them.

Two scopes. `verify` (GATEWAY_API_KEYS) is for applications: start, read, check, cancel,
resend, TOTP enrolment. `admin` (GATEWAY_ADMIN_KEYS) is for operators: audit, reports,
the console, user resets and unblocking — and, like Twilio's main key over a standard one,
everything the verify scope may do, so an operator can start a verification on another
channel for a user on the phone without a second key.

A route declares its scope with `@requires(Scope.ADMIN)`; `guard(blueprint)` checks every
route of a blueprint, and a route that declares nothing needs the admin scope (fail closed).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import TypeVar

from flask import Blueprint, current_app, g, request

from gateway.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., object])


class Scope(str, Enum):
    VERIFY = "verify"
    ADMIN = "admin"


# What each scope also grants.
IMPLIES = {Scope.VERIFY: frozenset({Scope.VERIFY}), Scope.ADMIN: frozenset({Scope.ADMIN, Scope.VERIFY})}


@dataclass(frozen=True)
class Caller:
    """An authenticated key: its scopes and an id that is safe to log (never the key)."""

    key_id: str
    scopes: frozenset[Scope]

    def may(self, scope: Scope) -> bool:
        """Whether this key may use a route that needs the scope."""
        return scope in self.scopes


@lru_cache(maxsize=64)
def key_id(key: str, secret: bytes) -> str:
    """A stable, non-secret name of a key for audit records: a keyed digest, not reversible."""
    # Cached: identify() asks only for configured keys, a handful, once per request each.
    return "key_" + hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:12]


def identify(given: str, api_keys: tuple[str, ...], admin_keys: tuple[str, ...], secret: bytes) -> Caller | None:
    """The caller a presented key belongs to, or None; every configured key is compared in constant time."""
    scopes: set[Scope] = set()
    token = given.encode()
    for scope, keys in ((Scope.VERIFY, api_keys), (Scope.ADMIN, admin_keys)):
        for key in keys:  # no early exit: the time taken does not say which key was close
            if hmac.compare_digest(token, key.encode()):
                scopes |= IMPLIES[scope]
    if not given or not scopes:
        return None
    return Caller(key_id(given, secret), frozenset(scopes))


def requires(scope: Scope) -> Callable[[F], F]:
    """Declare the scope a view needs (checked by guard())."""

    def mark(view: F) -> F:
        view.required_scope = scope  # type: ignore[attr-defined]
        return view

    return mark


def bearer_caller() -> Caller:
    """The caller of this request from `Authorization: Bearer <key>`, else 401."""
    from gateway.services import services

    svc = services()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    caller = None
    if scheme.lower() == "bearer":
        caller = identify(given.strip(), svc.settings.api_keys, svc.settings.admin_keys, svc.key("key-id"))
    if caller is None:
        raise Unauthorized("A valid API key is required: Authorization: Bearer <key>.")
    return caller


def check_scope(caller: Caller) -> None:
    """403 unless the caller has the scope the matched view declares (admin when it declares none)."""
    view = current_app.view_functions.get(request.endpoint or "")
    needed = getattr(view, "required_scope", Scope.ADMIN)
    if not caller.may(needed):
        raise Forbidden(f"This API key lacks the {needed.value} scope needed here.")


def guard(blueprint: Blueprint) -> None:
    """Authenticate every request to the blueprint by bearer key and enforce each route's scope."""

    @blueprint.before_request
    def _authenticate() -> None:
        g.caller = bearer_caller()
        check_scope(g.caller)


def current_caller() -> Caller:
    """The caller authenticated for this request."""
    return g.caller  # type: ignore[no-any-return]
