"""JSON views of simulator state for the control API and the developer phone page."""
from __future__ import annotations

from typing import Any

from .models import CallRecord, Handset, MessageRecord, iso
from .state import SimState


def message_view(message: MessageRecord) -> dict[str, Any]:
    """A message as the control API shows it."""
    return {
        "sid": message.sid, "direction": message.direction, "kind": message.kind,
        "from": message.from_, "to": message.to, "body": message.body, "status": message.status,
        "error_code": message.error_code, "time": iso(message.date_created), "date_sent": iso(message.date_sent),
        "num_segments": message.num_segments, "messaging_service_sid": message.messaging_service_sid,
        "status_callback": message.status_callback, "callbacks": list(message.callbacks),
        "webhook_status": message.webhook_status, "webhook_error": message.webhook_error,
    }


def call_view(call: CallRecord) -> dict[str, Any]:
    """A call with everything the handset heard and pressed."""
    said = [{"text": e["text"], "voice": e.get("voice"), "language": e.get("language")}
            for e in call.transcript if e["kind"] == "say"]
    return {
        "sid": call.sid, "from": call.from_, "to": call.to, "status": call.status, "active": call.active,
        "mode": call.mode, "answered_by": call.answered_by, "machine_detection": call.machine_detection,
        "time": iso(call.date_created), "start_time": iso(call.start_time), "end_time": iso(call.end_time),
        "duration": call.duration, "url": call.url, "status_callback": call.status_callback,
        "events": list(call.events), "transcript": [dict(e) for e in call.transcript], "said": said,
        "gathers": [dict(gather) for gather in call.gathers],
        "digits": [gather["digits"] for gather in call.gathers], "pressed": "".join(call.pressed),
        "unheard": "".join(call.unheard), "listening": call.listening,
        "script_left": list(call.script), "waiting_for_keys": call.waiting_for_keys,
        "gather": dict(call.gather_state) if call.gather_state else None,
        "errors": [dict(e) for e in call.errors], "sequence": call.sequence,
    }


def handset_summary(state: SimState, handset: Handset) -> dict[str, Any]:
    """Short handset entry for lists (caller holds the lock)."""
    active = next((state.calls[s] for s in reversed(handset.calls) if state.calls[s].active), None)
    last = None
    thread = sorted(handset.inbox + handset.sent, key=lambda s: state.messages[s].date_created)
    if thread:
        message = state.messages[thread[-1]]
        last = {"sid": message.sid, "body": message.body, "from": message.from_, "time": iso(message.date_created)}
    return {
        "number": handset.number, "number_type": handset.number_type, "country": handset.country,
        "inbox_count": len(handset.inbox), "sent_count": len(handset.sent), "calls_count": len(handset.calls),
        "active_call": {"sid": active.sid, "status": active.status, "from": active.from_} if active else None,
        "last_message": last, "last_activity": iso(handset.last_activity),
    }


def handset_view(state: SimState, handset: Handset) -> dict[str, Any]:
    """Full handset: behaviour, SMS inbox and sent items, calls (caller holds the lock)."""
    behaviour, source = state.behaviour_for(handset.number)
    active = next((state.calls[s] for s in reversed(handset.calls) if state.calls[s].active), None)
    return {
        **handset_summary(state, handset),
        "behaviour": behaviour.to_json(), "behaviour_source": source,
        "inbox": [message_view(state.messages[s]) for s in handset.inbox],
        "sent": [message_view(state.messages[s]) for s in handset.sent],
        "calls": [call_view(state.calls[s]) for s in handset.calls],
        "active_call": call_view(active) if active else None,
        "opted_out_from": sorted(owned for owned, number in state.optouts if number == handset.number),
    }
