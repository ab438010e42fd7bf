"""Control API under /_sim/ (JSON) for tests and the developer phone page."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import numbering
from .core import Simulator
from .models import BehaviourError, behaviour_from_json, rule_from_json
from .openapi import validate_request
from .views import call_view, handset_summary, handset_view, message_view
from .voice import CallStateError

bp = Blueprint("sim_control", __name__, url_prefix="/_sim")


class ControlError(Exception):
    """A control-API request error with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        """Keep status and message."""
        super().__init__(message)
        self.status = status


@bp.errorhandler(ControlError)
def _control_error(exc: ControlError) -> tuple[Response, int]:
    """{"error": "..."} with the status."""
    return jsonify({"error": str(exc)}), exc.status


@bp.errorhandler(BehaviourError)
def _behaviour_error(exc: BehaviourError) -> tuple[Response, int]:
    """Invalid behaviour/rule payloads are 400s."""
    return jsonify({"error": str(exc)}), 400


def _sim() -> Simulator:
    """The simulator bound to the current app."""
    return current_app.extensions["carrier_simulator"]


def _body() -> dict[str, Any]:
    """The JSON object body (empty object when absent)."""
    data = request.get_json(silent=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _number(number: str) -> str:
    """Validate a handset number from the URL (E.164, valid)."""
    if not numbering.is_valid_e164(number):
        raise ControlError(400, f"not a valid E.164 phone number: {number}")
    return number


def _since() -> int:
    """The ?since=N index filter (default 0)."""
    try:
        return int(request.args.get("since", "0"))
    except ValueError:
        raise ControlError(400, "since must be an integer") from None


@bp.get("/config")
def config() -> Response:
    """The simulator's public configuration (never the auth token)."""
    cfg = _sim().config
    return jsonify({"account_sid": cfg.account_sid, "numbers": list(cfg.numbers),
                    "messaging_services": list(cfg.messaging_services), "sms_url": cfg.sms_url,
                    "callback_delay_ms": cfg.callback_delay_ms, "ring_ms": cfg.ring_ms})


@bp.post("/reset")
def reset() -> Response:
    """Forget every handset, message, call, rule change, opt-out and record."""
    _sim().reset()
    return jsonify({"ok": True})


@bp.get("/handsets")
def handsets() -> Response:
    """All handsets, most recently active first."""
    state = _sim().state
    with state.lock:
        items = sorted(state.handsets.values(), key=lambda h: h.last_activity, reverse=True)
        return jsonify({"handsets": [handset_summary(state, h) for h in items]})


@bp.get("/handsets/<number>")
def handset(number: str) -> Response:
    """One handset (created on first use)."""
    state = _sim().state
    with state.lock:
        return jsonify(handset_view(state, state.handset(_number(number))))


@bp.route("/handsets/<number>/behaviour", methods=["GET", "PUT", "PATCH", "DELETE"])
def behaviour(number: str) -> Response:
    """GET effective behaviour; PUT replaces, PATCH merges over the effective one; DELETE clears it."""
    state = _sim().state
    number = _number(number)
    with state.lock:
        if request.method == "PUT":
            state.behaviours[number] = behaviour_from_json(_body())
        elif request.method == "PATCH":
            state.behaviours[number] = behaviour_from_json(_body(), base=state.behaviour_for(number)[0])
        elif request.method == "DELETE":
            state.behaviours.pop(number, None)
        state.handset(number)
        current, source = state.behaviour_for(number)
        return jsonify({"number": number, "behaviour": current.to_json(), "source": source})


@bp.post("/handsets/<number>/sms")
def handset_sms(number: str) -> tuple[Response, int]:
    """The handset sends an SMS {"body", "to"?} to an owned number (webhook posted in the background)."""
    data = _body()
    body = data.get("body")
    to = data.get("to")
    if not isinstance(body, str) or not body:
        raise ControlError(400, "body must be a non-empty string")
    if len(body) > 1600:
        raise ControlError(400, "body must be at most 1600 characters")
    if to is not None and not isinstance(to, str):
        raise ControlError(400, "to must be a string")
    sim = _sim()
    try:
        message = sim.sms.receive(_number(number), body, to or None)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    with sim.state.lock:
        return jsonify(message_view(message)), 202


@bp.post("/handsets/<number>/keys")
def handset_keys(number: str) -> Response:
    """Press DTMF keys {"keys": "12#"} on the handset's answered call."""
    keys = _body().get("keys")
    if not isinstance(keys, str):
        raise ControlError(400, "keys must be a string of 0-9, * and #")
    sim = _sim()
    try:
        call = sim.voice.press(_number(number), keys)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    except CallStateError as exc:
        raise ControlError(409, str(exc)) from None
    with sim.state.lock:
        return jsonify(call_view(call))


@bp.post("/handsets/<number>/hangup")
def handset_hangup(number: str) -> Response:
    """The handset hangs up its active call (declining a ringing call shows as busy)."""
    sim = _sim()
    try:
        call = sim.voice.hangup(_number(number))
    except CallStateError as exc:
        raise ControlError(409, str(exc)) from None
    with sim.state.lock:
        return jsonify(call_view(call))


@bp.route("/rules", methods=["GET", "PUT", "POST"])
def rules() -> Response:
    """GET the rule list; PUT {"rules": [...]} replaces it; POST {rule} appends one."""
    state = _sim().state
    with state.lock:
        if request.method == "PUT":
            items = _body().get("rules")
            if not isinstance(items, list):
                raise ControlError(400, "rules must be a list")
            state.rules = [rule_from_json(item) for item in items]
        elif request.method == "POST":
            state.rules.append(rule_from_json(_body()))
        return jsonify({"rules": [rule.to_json() for rule in state.rules]})


@bp.get("/requests")
def requests_() -> Response:
    """Recorded REST requests (?since=index; ?validate=1 adds OpenAPI problems to each)."""
    state = _sim().state
    since, check = _since(), request.args.get("validate") in ("1", "true")
    with state.lock:
        records = [r for r in state.requests if r.index >= since]
    items = []
    for record in records:
        item = record.to_json()
        if check:
            pairs = record.form if record.method not in ("GET", "HEAD") else record.query
            item["problems"] = validate_request(record.method, record.path, pairs)
        items.append(item)
    return jsonify({"requests": items})


@bp.get("/webhooks")
def webhooks() -> Response:
    """Webhooks sent and their answers (?since=index, ?kind=sms-status|sms-inbound|voice|call-status, ?sid=)."""
    state = _sim().state
    since, kind, sid = _since(), request.args.get("kind"), request.args.get("sid")
    with state.lock:
        items = [w.to_json() for w in state.webhooks
                 if w.index >= since and (kind is None or w.kind == kind) and (sid is None or w.sid == sid)]
    return jsonify({"webhooks": items})


@bp.get("/messages")
def messages() -> Response:
    """Every message resource the simulator knows."""
    state = _sim().state
    with state.lock:
        return jsonify({"messages": [message_view(m) for m in state.messages.values()]})


@bp.get("/messages/<sid>")
def message(sid: str) -> Response:
    """One message."""
    state = _sim().state
    with state.lock:
        if sid not in state.messages:
            raise ControlError(404, f"no message {sid}")
        return jsonify(message_view(state.messages[sid]))


@bp.get("/calls")
def calls() -> Response:
    """Every call resource the simulator knows."""
    state = _sim().state
    with state.lock:
        return jsonify({"calls": [call_view(c) for c in state.calls.values()]})


@bp.get("/calls/<sid>")
def call(sid: str) -> Response:
    """One call with transcript and gathers."""
    state = _sim().state
    with state.lock:
        if sid not in state.calls:
            raise ControlError(404, f"no call {sid}")
        return jsonify(call_view(state.calls[sid]))


@bp.get("/optouts")
def optouts() -> Response:
    """Current opt-out blocks as [owned number, handset] pairs."""
    state = _sim().state
    with state.lock:
        return jsonify({"optouts": [{"owned": o, "handset": h} for o, h in sorted(state.optouts)]})
