"""Twilio-shaped JSON for Message and Call resources (snake_case, RFC 2822 dates, strings for counts)."""
from __future__ import annotations

from typing import Any

from . import numbering
from .models import CallRecord, MessageRecord, rfc2822

API_VERSION = "2010-04-01"


def message_uri(account_sid: str, sid: str) -> str:
    """The resource URI of a message."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"


def call_uri(account_sid: str, sid: str) -> str:
    """The resource URI of a call."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Calls/{sid}.json"


def message_json(message: MessageRecord) -> dict[str, Any]:
    """The Message resource as Twilio's API returns it."""
    base = message_uri(message.account_sid, message.sid)[: -len(".json")]
    return {
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": message.error_code,
        "error_message": None,
        "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": str(message.num_media),
        "num_segments": str(message.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        "to": message.to,
        "uri": message_uri(message.account_sid, message.sid),
    }


def call_json(call: CallRecord) -> dict[str, Any]:
    """The Call resource as Twilio's API returns it."""
    base = call_uri(call.account_sid, call.sid)[: -len(".json")]
    subresources = ("notifications", "recordings", "payments", "events", "siprec", "streams",
                    "transcriptions", "user_defined_message_subscriptions", "user_defined_messages")
    names = {"user_defined_message_subscriptions": "UserDefinedMessageSubscriptions",
             "user_defined_messages": "UserDefinedMessages"}
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "direction": "outbound-api",
        "duration": None if call.duration is None else str(call.duration),
        "end_time": rfc2822(call.end_time),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": numbering.national_format(call.from_),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": numbering.stable_sid("PN", call.from_),
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "subresource_uris": {name: f"{base}/{names.get(name, name.capitalize())}.json" for name in subresources},
        "to": call.to,
        "to_formatted": numbering.national_format(call.to),
        "trunk_sid": None,
        "uri": call_uri(call.account_sid, call.sid),
    }
