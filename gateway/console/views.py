"""The helpdesk console's pages and actions; every action is recorded with the operator's key id."""
from __future__ import annotations

import logging
from importlib.resources import files
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, make_response, redirect, render_template, request, send_file, url_for

from gateway import audit, methods, operators, phone, reports, verifications
from gateway.auth import Caller, Scope, identify
from gateway.console import session
from gateway.errors import GatewayError, InvalidRequest, NotFound, error_response
from gateway.models import Channel, iso
from gateway.schemas import USER_ID, parse_start
from gateway.services import services

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
RECENT = 20
# No script or style from anywhere but here (no CDN); Plotly sets inline styles on its SVG.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith(("/console/static/", "/console/vendor/")):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(GatewayError)
def _error(exc: GatewayError) -> tuple[str, int]:
    return render_template("console/error.html", error=exc, signed_in=session.current()), exc.http_status


@bp.app_template_global()
def csrf_token() -> str:
    """The signed-in operator's CSRF token, for forms."""
    current = session.current()
    return current.csrf if current else ""


@bp.app_template_filter("when")
def _when(ts: float | str | None) -> str:
    return (iso(ts) if isinstance(ts, (int, float)) else ts or "").replace("T", " ").replace("Z", " UTC")


def _caller() -> Caller:
    current = session.current()
    assert current is not None  # signed_in checked it
    return current.caller


# -- signing in and out ------------------------------------------------------------
@bp.get("/login")
def login() -> Response:
    """The sign-in form."""
    token = session.login_token()
    response = make_response(render_template("console/login.html", token=token, error=None,
                                             next=request.args.get("next", "")))
    session.set_cookie(response, session.LOGIN_COOKIE, token, 600)
    return response


@bp.post("/login")
def login_post() -> Response | tuple[Response, int]:
    """Sign in with an admin key."""
    session.check_login_token()
    svc = services()
    given = request.form.get("key", "").strip()
    caller = identify(given, svc.settings.api_keys, svc.settings.admin_keys, svc.key("key-id"))
    if caller is None or not caller.may(Scope.ADMIN):
        log.warning("console sign-in refused from %s", request.remote_addr)
        token = session.login_token()
        page = render_template("console/login.html", token=token, next=request.form.get("next", ""),
                               error="That is not an admin key (GATEWAY_ADMIN_KEYS).")
        response = make_response(page, 401)
        session.set_cookie(response, session.LOGIN_COOKIE, token, 600)
        return response
    target = request.form.get("next", "")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console"):
        target = url_for("console.dashboard")  # never an open redirect
    response = redirect(target)
    session.start(caller, response)
    operators.record(svc, caller, "sign_in", caller.key_id, via="console")
    return response


@bp.post("/logout")
@session.signed_in
def logout() -> Response:
    """Sign out: the session ends on the server too."""
    operators.record(services(), _caller(), "sign_out", _caller().key_id, via="console")
    response = redirect(url_for("console.login"))
    session.end(response)
    return response


# -- dashboard -----------------------------------------------------------------------
@bp.get("/")
@session.signed_in
def dashboard() -> str:
    """Charts of the usage report."""
    query = reports.parse_query(request.args)
    return render_template("console/dashboard.html", since=query.first.isoformat(), until=query.last.isoformat(),
                           signed_in=session.current())


@bp.get("/data/usage")
def usage() -> Response:
    """The usage report (same parameters and answer as GET /v1/reports/usage), for the charts."""
    # A data request, not a page: errors in the API's JSON shape, and no redirect to sign-in.
    if session.current() is None:
        return error_response("unauthorized", "Sign in to the console first.", 401)
    try:
        query = reports.parse_query(request.args)
    except GatewayError as exc:
        return error_response(exc.code, exc.message, exc.http_status)
    return jsonify(reports.usage(services(), query))


@bp.get("/vendor/plotly.min.js")
def plotly_js() -> Response:
    """Plotly's browser bundle, from the plotly package installed by pip (no CDN)."""
    bundle = files("plotly") / "package_data" / "plotly.min.js"
    return send_file(str(bundle), mimetype="text/javascript", max_age=86400)


# -- search and pages ------------------------------------------------------------------
@bp.get("/search")
@session.signed_in
def search() -> Response:
    """Go to a verification (vf_…), a number (+… or digits) or a user id."""
    q = request.args.get("q", "").strip()
    if not q:
        return redirect(url_for("console.dashboard"))
    if q.startswith("vf_"):
        return redirect(url_for("console.verification", verification_id=q))
    if q.lstrip("+").replace(" ", "").isdigit():
        return redirect(url_for("console.number", number=phone.parse(q.replace(" ", ""), None).e164))
    if not USER_ID.match(q):
        raise InvalidRequest("Search for a verification id (vf_…), a phone number (+48…) or a user id.")
    return redirect(url_for("console.user", user_id=q))


@bp.get("/verifications/<verification_id>")
@session.signed_in
def verification(verification_id: str) -> str:
    """A verification's attempt timeline, live or from its audit record."""
    svc = services()
    live = svc.store.load(verification_id) if verification_id.startswith("vf_") else None
    # An ended verification's audit record also has its end time; a pending one has none yet.
    record = audit.find(svc, verification_id) if live is None or not live.pending else None
    if record is None and live is None:
        raise NotFound(f"No verification {verification_id} (live or in the audit records).")
    if record is None and live is not None:
        record = {"verification_id": live.id, "user_id": live.user_id, "phone_number": live.to,
                  "status": live.status.value, "reason": live.reason.value if live.reason else None,
                  "channels": [c.value for c in live.channels], "created_at": iso(live.created_at),
                  "ended_at": None, "client_ip": live.client_ip, "country": live.country,
                  "attempts": [{**a.to_json(), "ended_because": a.ended_because} for a in live.attempts]}
    return render_template("console/verification.html", v=record, signed_in=session.current())


def _user_page(user_id: str) -> dict[str, object]:
    svc = services()
    found = svc.store.user_methods(methods.valid_user_id(user_id))
    records = audit.search(svc, audit.Filters(user_id=user_id, limit=RECENT)).records
    actions = operators.recent(svc, target=user_id)
    if not (found.known or found.enrolled or records or actions):
        raise NotFound(f"The gateway knows nothing of user {user_id}.")
    numbers = list(dict.fromkeys(str(r["phone_number"]) for r in records if r["phone_number"]))
    app = "active" if found.app_secret_encrypted else ("pending" if found.pending_secret_encrypted else "none")
    return {"user_id": user_id, "app": app, "pending_until": found.pending_expires, "tokens": found.tokens,
            "recovery_codes": found.recovery_codes,
            "records": records, "actions": actions, "numbers": numbers,
            "channels": [c.value for c in Channel], "signed_in": session.current()}


@bp.get("/users/<user_id>")
@session.signed_in
def user(user_id: str) -> str:
    """A user's methods, tokens, recent verifications and the actions taken on them."""
    return render_template("console/user.html", **_user_page(user_id))


@bp.post("/users/<user_id>/reset")
@session.signed_in
def user_reset(user_id: str) -> Response:
    """Lost phone: remove every method of the user."""
    _user_page(user_id)  # 404 for a user the gateway does not know
    removed = methods.reset_user(services(), user_id)
    operators.record(services(), _caller(), "reset_user", user_id, f"{removed} method(s) removed", via="console")
    return redirect(url_for("console.user", user_id=user_id, done="reset"))


@bp.post("/users/<user_id>/tokens")
@session.signed_in
def user_token(user_id: str) -> Response:
    """Assign a token to the user, or take one back."""
    _user_page(user_id)
    serial, op = request.form.get("serial", "").strip(), request.form.get("op", "assign")
    if not serial or op not in ("assign", "unassign"):
        raise InvalidRequest("'serial' is required and 'op' must be assign or unassign.")
    if op == "unassign" and serial not in {t.serial for t in services().store.user_methods(user_id).tokens}:
        raise InvalidRequest(f"Token {serial} is not assigned to {user_id}.")
    try:
        said = methods.assign_token(services(), serial, user_id if op == "assign" else None)
    except methods.TokenConflict as exc:
        raise InvalidRequest(str(exc)) from None
    operators.record(services(), _caller(), f"{op}_token", user_id, said, via="console")
    return redirect(url_for("console.user", user_id=user_id, done=op))


@bp.post("/users/<user_id>/verifications")
@session.signed_in
def user_start(user_id: str) -> Response:
    """No SMS arriving: start a verification for the user on another channel."""
    _user_page(user_id)
    body = {"to": request.form.get("to", "").strip(), "channel": request.form.get("channel", ""), "user_id": user_id}
    v, _ = verifications.start(services(), parse_start(body), None)
    operators.record(services(), _caller(), "start_verification", user_id, f"{v.id} by {v.channel.value} to "
                     f"{phone.mask(v.to)}", via="console")
    return redirect(url_for("console.verification", verification_id=v.id))


def _number_page(number: str) -> dict[str, object]:
    svc = services()
    if not audit.E164.match(number):
        raise InvalidRequest("A number is E.164, like +48600100200.")
    state = operators.number_state(svc, number)
    records = audit.search(svc, audit.Filters(to=number, limit=RECENT)).records
    actions = operators.recent(svc, target=number)
    if not (state.opted_out or state.blocked or state.counters or state.breakers or records or actions):
        raise NotFound(f"The gateway knows nothing of {number}.")
    return {"number": number, "state": state, "records": records, "actions": actions,
            "signed_in": session.current()}


@bp.get("/numbers/<number>")
@session.signed_in
def number(number: str) -> str:
    """A number's opt-out, fraud block and rate limit, with their reasons."""
    return render_template("console/number.html", **_number_page(number))


@bp.post("/numbers/<number>/unblock")
@session.signed_in
def number_unblock(number: str) -> Response:
    """Lift a fraud block."""
    _number_page(number)
    operators.unblock(services(), _caller(), number, via="console")
    return redirect(url_for("console.number", number=number, done="unblocked"))


@bp.post("/numbers/<number>/clear-rate-limit")
@session.signed_in
def number_clear_rate(number: str) -> Response:
    """Reset the number's start counter."""
    _number_page(number)
    operators.clear_rate_limit(services(), _caller(), number, via="console")
    return redirect(url_for("console.number", number=number, done="cleared"))


@bp.post("/numbers/<number>/breakers/<scope>/<breaker_id>/reset")
@session.signed_in
def number_reset_breaker(number: str, scope: str, breaker_id: str) -> Response:
    """Close the pumping breaker of the number's range or country."""
    state = _number_page(number)["state"]
    if not any((b["scope"], b["id"]) == (scope, breaker_id) for b in state.breakers):  # type: ignore[attr-defined]
        raise NotFound(f"No tripped {scope} breaker {breaker_id} covers {number}.")
    operators.reset_breaker(services(), _caller(), scope, breaker_id, via="console")
    return redirect(url_for("console.number", number=number, done="breaker reset"))
