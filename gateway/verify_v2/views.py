"""Routes of /v2: Twilio's paths (no trailing slashes: the SDKs do not follow redirects), thin handlers."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, g, jsonify, request

from gateway.services import services
from gateway.v2_store import V2Store
from gateway.verify_v2 import errors, flows, forms, render
from gateway.verify_v2.errors import AUTHENTICATE, TwilioError
from gateway.verify_v2.service import Service, ServiceStore

bp = Blueprint("verify_v2", __name__, url_prefix="/v2")
errors.register(bp)


def _store() -> ServiceStore:
    return ServiceStore(V2Store(services().redis))


@bp.before_request
def authenticate() -> None:
    """HTTP Basic with a VERIFY_ACCOUNTS login (account SID and token, or API key and secret)."""
    auth = request.authorization
    user = (auth.username or "") if auth and auth.type == "basic" else ""
    secret = (auth.password or "") if auth and auth.type == "basic" else ""
    account = None
    for cred in services().settings.verify_accounts:  # no early exit: timing tells nothing
        same = hmac.compare_digest(user.encode(), cred.username.encode())
        same &= hmac.compare_digest(secret.encode(), cred.secret.encode())
        if same:
            account = cred.account_sid
    if account is None:
        raise TwilioError(AUTHENTICATE, 401, "Authenticate")
    g.account_sid = account


def _service(sid: str) -> Service:
    return _store().get(g.account_sid, sid)


@bp.post("/Services")
def create_service() -> tuple[Response, int]:
    """Create a Service."""
    return jsonify(render.service(_store().create(g.account_sid, request.form))), 201


@bp.get("/Services")
def list_services() -> Response:
    """A page of the account's Services."""
    number, size = forms.page(request.args)
    found, more = _store().page(g.account_sid, number, size)
    return jsonify(services=[render.service(s) for s in found],
                   meta=render.page_meta("services", "/v2/Services", number, size, more))


@bp.get("/Services/<sid>")
def fetch_service(sid: str) -> Response:
    """Fetch a Service."""
    return jsonify(render.service(_service(sid)))


@bp.post("/Services/<sid>")
def update_service(sid: str) -> Response:
    """Change some settings of a Service."""
    return jsonify(render.service(_store().update(g.account_sid, sid, request.form)))


@bp.delete("/Services/<sid>")
def delete_service(sid: str) -> tuple[str, int]:
    """Delete a Service."""
    _store().delete(g.account_sid, sid)
    return "", 204


@bp.post("/Services/<sid>/Verifications")
def create_verification(sid: str) -> tuple[Response, int]:
    """Start a verification (or send the live one for this `to` again)."""
    service = _service(sid)
    req = flows.parse_create(request.form, service)
    v, created = flows.create(services(), service, req)
    if created:
        _store().remember(service.account_sid, v.id, v.created_at)
    return jsonify(render.verification(v, service)), 201


@bp.get("/Services/<sid>/Verifications/<path:target>")
def fetch_verification(sid: str, target: str) -> Response:
    """Fetch a pending verification by VE SID or by `to` (Werkzeug keeps the + of the path as it is)."""
    service = _service(sid)
    return jsonify(render.verification(flows.find(services(), service, target), service))


@bp.post("/Services/<sid>/Verifications/<path:target>")
def update_verification(sid: str, target: str) -> Response:
    """Cancel or approve a pending verification."""
    service = _service(sid)
    return jsonify(render.verification(flows.update(services(), service, target, request.form), service))


@bp.post("/Services/<sid>/VerificationCheck")
def check_verification(sid: str) -> Response:
    """Check a code."""
    service = _service(sid)
    v, at = flows.check(services(), service, request.form)
    return jsonify(render.verification_check(v, service, at))
