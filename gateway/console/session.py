"""Console sign-in: server-side sessions in Redis, a cookie that only names one, CSRF tokens.

The cookie holds a random session id; Redis keeps only its SHA-256, so a copy of Redis does
not let anyone sign in. The cookie is Secure, HttpOnly and SameSite=Strict (browsers accept
Secure cookies from http://localhost, so the dev entry point works without TLS). Every
state-changing form carries the session's CSRF token, compared in constant time; the sign-in
form, before any session exists, uses a double-submit token held in its own cookie.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

from flask import Response, g, redirect, request, url_for

from gateway.auth import Caller, Scope
from gateway.errors import Forbidden, GatewayError
from gateway.services import services

COOKIE = "gw_console"
LOGIN_COOKIE = "gw_console_login"
PATH = "/console"
F = TypeVar("F", bound=Callable[..., object])


class SignInRequired(GatewayError):
    code, http_status = "unauthorized", 401


@dataclass(frozen=True)
class Session:
    """A signed-in operator."""

    caller: Caller
    csrf: str
    started: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """A console cookie: Secure, HttpOnly, SameSite=Strict, only for /console."""
    response.set_cookie(name, value, max_age=max_age, path=PATH, secure=True, httponly=True, samesite="Strict")


def start(caller: Caller, response: Response) -> None:
    """Open a session for a caller with the admin scope and set its cookie."""
    svc = services()
    session_id = secrets.token_urlsafe(32)
    fields = {"key_id": caller.key_id, "csrf": secrets.token_urlsafe(32), "started": f"{time.time():.0f}"}
    svc.store.session_save(_digest(session_id), fields, svc.settings.console_session_ttl)
    set_cookie(response, COOKIE, session_id, None)  # a browser-session cookie; Redis keeps the expiry
    response.delete_cookie(LOGIN_COOKIE, path=PATH, secure=True, httponly=True, samesite="Strict")


def current() -> Session | None:
    """The session named by this request's cookie, if it is still open."""
    if "console_session" not in g:
        session_id = request.cookies.get(COOKIE, "")
        fields = None
        if session_id:
            svc = services()
            fields = svc.store.session_load(_digest(session_id), svc.settings.console_session_ttl)
        g.console_session = (
            Session(Caller(fields["key_id"], frozenset({Scope.ADMIN, Scope.VERIFY})), fields["csrf"],
                    float(fields["started"]))
            if fields else None
        )
    return g.console_session  # type: ignore[no-any-return]


def end(response: Response) -> None:
    """Close this request's session and clear its cookie."""
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        services().store.session_drop(_digest(session_id))
    response.delete_cookie(COOKIE, path=PATH, secure=True, httponly=True, samesite="Strict")


def login_token() -> str:
    """The sign-in form's double-submit token (reused from its cookie when present)."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def check_login_token() -> None:
    """Refuse a sign-in whose form token does not match its cookie."""
    given, expected = request.form.get("csrf_token", ""), request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("The sign-in form has expired; load it again.")


def signed_in(view: F) -> F:
    """Pages need a session (else to the sign-in page); posts also need the session's CSRF token."""

    @wraps(view)
    def wrapper(*args: object, **kwargs: object) -> object:
        session = current()
        if request.method == "POST":
            if session is None:
                raise SignInRequired("Sign in to the console first.")
            given = request.form.get("csrf_token", "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise Forbidden("The form's CSRF token is missing or wrong; nothing was changed.")
        elif session is None:
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
