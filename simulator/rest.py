"""The fake Twilio REST API (2010-04-01): Messages and Calls, HTTP Basic auth, request recording."""
from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from .core import Simulator
from .errors import HTML_FAULT_STATUSES, TwilioError
from .resources import call_json, message_json
from .validation import check_account, validate_call, validate_message

bp = Blueprint("twilio_rest", __name__)
PREFIX = "/2010-04-01"


def _sim() -> Simulator:
    """The simulator bound to the current app."""
    return current_app.extensions["carrier_simulator"]


def _json(payload: dict[str, Any], status: int) -> Response:
    """A JSON response like Twilio's (UTF-8)."""
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(exc: TwilioError) -> Response:
    """Render a TwilioError (or an HTML server fault for bare 5xx codes)."""
    g.sim_error_code = exc.code
    if exc.code in HTML_FAULT_STATUSES:
        html = f"<html><body><h1>{exc.code} Server Error</h1></body></html>"
        return Response(html, status=exc.status, mimetype="text/html")
    response = _json(exc.body(), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


@bp.before_request
def _authenticate() -> Response | None:
    """HTTP Basic with the account SID and auth token; otherwise 401 / 20003."""
    config = _sim().config
    auth = request.authorization
    g.sim_auth_user = auth.username if auth else None
    if auth is None or auth.type != "basic":
        return _error(TwilioError(code=20003, status=401, message="Authenticate"))
    if auth.username != config.account_sid or auth.password != config.auth_token:
        return _error(TwilioError(code=20003, status=401,
                                  message="Authentication Error - invalid username or password"))
    return None


@bp.after_request
def _record(response: Response) -> Response:
    """Record every REST request (method, path, form pairs in order) with its outcome."""
    form = list(request.form.items(multi=True)) if request.method not in ("GET", "HEAD") else []
    _sim().state.add_request(method=request.method, path=request.path, form=form,
                             query=list(request.args.items(multi=True)), status=response.status_code,
                             error_code=g.get("sim_error_code"), auth_user=g.get("sim_auth_user"))
    return response


@bp.errorhandler(TwilioError)
def _twilio_error(exc: TwilioError) -> Response:
    """Answer TwilioErrors raised by handlers with Twilio's error body."""
    return _error(exc)


@bp.post(PREFIX + "/Accounts/<account_sid>/Messages.json")
def create_message(account_sid: str) -> Response:
    """Create Message."""
    sim = _sim()
    check_account(account_sid, sim.config)
    req = validate_message(request.form, sim.config)
    # The delay in force when the request came: the message is listed once created, and a client
    # that sees it may change the behaviour (a test making the carrier quick again) before the answer.
    delay = sim.state.behaviour_for(req.to)[0].rest_delay_ms
    message = sim.sms.create(req)
    # Accepted (and on its way) before the answer: a late answer is the client's ambiguous timeout.
    if delay:
        time.sleep(delay / 1000.0)
    with sim.state.lock:
        return _json(message_json(message), 201)


@bp.get(PREFIX + "/Accounts/<account_sid>/Messages/<sid>.json")
def fetch_message(account_sid: str, sid: str) -> Response:
    """Fetch Message."""
    sim = _sim()
    check_account(account_sid, sim.config)
    with sim.state.lock:
        message = sim.state.messages.get(sid)
        if message is None:
            raise _not_found()
        return _json(message_json(message), 200)


@bp.post(PREFIX + "/Accounts/<account_sid>/Calls.json")
def create_call(account_sid: str) -> Response:
    """Create Call."""
    sim = _sim()
    check_account(account_sid, sim.config)
    call = sim.voice.create(validate_call(request.form, sim.config))
    with sim.state.lock:
        return _json(call_json(call), 201)


@bp.get(PREFIX + "/Accounts/<account_sid>/Calls/<sid>.json")
def fetch_call(account_sid: str, sid: str) -> Response:
    """Fetch Call."""
    sim = _sim()
    check_account(account_sid, sim.config)
    with sim.state.lock:
        call = sim.state.calls.get(sid)
        if call is None:
            raise _not_found()
        return _json(call_json(call), 200)


@bp.post(PREFIX + "/Accounts/<account_sid>/Calls/<sid>.json")
def update_call(account_sid: str, sid: str) -> Response:
    """Update Call: Status=canceled|completed, or Url/Twiml to redirect a live call."""
    sim = _sim()
    check_account(account_sid, sim.config)
    form = request.form
    method = (form.get("Method") or "POST").upper()
    call = sim.voice.update(sid, form.get("Status") or None, form.get("Url") or None, method,
                            form.get("Twiml") or None)
    with sim.state.lock:
        return _json(call_json(call), 200)


def _page(key: str, items: list[dict[str, Any]]) -> Response:
    """A Twilio 2010-style list page (newest first) honouring PageSize/Page."""
    try:
        size = min(max(int(request.args.get("PageSize", "50")), 1), 1000)
        page = max(int(request.args.get("Page", "0")), 0)
    except ValueError:
        raise TwilioError(code=20001, status=400, message="PageSize and Page must be integers") from None
    start = page * size
    chunk = items[start:start + size]
    base = request.path

    def uri(number: int) -> str:
        return f"{base}?PageSize={size}&Page={number}"

    has_next = start + size < len(items)
    return _json({key: chunk, "end": start + max(len(chunk) - 1, 0), "first_page_uri": uri(0),
                  "next_page_uri": uri(page + 1) if has_next else None, "page": page, "page_size": size,
                  "previous_page_uri": uri(page - 1) if page else None, "start": start, "uri": uri(page)}, 200)


@bp.get(PREFIX + "/Accounts/<account_sid>/Messages.json")
def list_messages(account_sid: str) -> Response:
    """Read multiple Messages (filters: To, From), newest first."""
    sim = _sim()
    check_account(account_sid, sim.config)
    to, from_ = request.args.get("To"), request.args.get("From")
    with sim.state.lock:
        items = [message_json(m) for m in reversed(list(sim.state.messages.values()))
                 if (to is None or m.to == to) and (from_ is None or m.from_ == from_)]
    return _page("messages", items)


@bp.get(PREFIX + "/Accounts/<account_sid>/Calls.json")
def list_calls(account_sid: str) -> Response:
    """Read multiple Calls (filters: To, From, Status), newest first."""
    sim = _sim()
    check_account(account_sid, sim.config)
    to, from_, status = request.args.get("To"), request.args.get("From"), request.args.get("Status")
    with sim.state.lock:
        items = [call_json(c) for c in reversed(list(sim.state.calls.values()))
                 if (to is None or c.to == to) and (from_ is None or c.from_ == from_)
                 and (status is None or c.status == status)]
    return _page("calls", items)


@bp.route(PREFIX + "/<path:rest>", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
def unknown(rest: str) -> Response:
    """Any other API path: Twilio's 404 / 20404."""
    raise _not_found()


def _not_found() -> TwilioError:
    """20404 for the current path."""
    return TwilioError(code=20404, status=404, message=f"The requested resource {request.path} was not found")
