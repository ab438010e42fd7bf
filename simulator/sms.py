"""SMS engine: outbound message lifecycle with status callbacks, inbound SMS, opt-out, replies."""
from __future__ import annotations

import uuid
from urllib.parse import urljoin
from typing import TYPE_CHECKING

from . import numbering
from .errors import TwilioError, http_status_for, twilio_error
from .models import Behaviour, MessageRecord, new_sid, utcnow
from .twiml import TwimlError, media_type, parse_messaging
from .validation import MessageRequest

if TYPE_CHECKING:
    from .core import Simulator

API_VERSION = "2010-04-01"
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
AUTO_REPLIES = {
    "stop": "You have successfully been unsubscribed. You will not receive any more messages from this number. "
            "Reply START to resubscribe.",
    "start": "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
             "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "help": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}
DEFAULT_ASYNC_ERRORS = {"failed": 30008, "undelivered": 30003}
MAX_MESSAGING_REDIRECTS = 5


def keyword_of(body: str) -> str | None:
    """'stop', 'start' or 'help' when the body is a single opt-out/opt-in/help keyword."""
    word = body.strip().upper()
    if word in OPT_OUT:
        return "stop"
    if word in OPT_IN:
        return "start"
    if word in HELP:
        return "help"
    return None


class SmsEngine:
    """Creates messages, runs their delivery in the background and handles handset-originated SMS."""

    def __init__(self, sim: "Simulator") -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.state = sim.state
        self.config = sim.config

    # -- outbound ------------------------------------------------------------------
    def create(self, req: MessageRequest) -> MessageRecord:
        """Accept a validated Create Message request (or raise the handset's REST error)."""
        behaviour, _ = self.state.behaviour_for(req.to)
        via_service = req.messaging_service_sid is not None
        if self.state.is_blocked(req.from_, req.to, via_service):
            raise twilio_error(21610)
        if behaviour.sms == "reject":
            raise rest_error_for(behaviour, req.to)
        message = MessageRecord(
            sid=new_sid("MM" if req.media_urls else "SM"), account_sid=self.config.account_sid, to=req.to,
            from_=req.from_, body=req.body, status="accepted" if via_service else "queued",
            direction="outbound-api", num_segments=numbering.count_segments(req.body),
            messaging_service_sid=req.messaging_service_sid, status_callback=req.status_callback,
            num_media=len(req.media_urls))
        with self.state.lock:
            self.state.messages[message.sid] = message
            self.state.touch(req.to)
        self.sim.submit(lambda gen: self._lifecycle(message.sid, behaviour, gen))
        return message

    def _steps(self, message: MessageRecord, behaviour: Behaviour) -> list[str]:
        """The status sequence for a message given the handset behaviour."""
        steps = ["queued"] if message.messaging_service_sid else []
        outcome = behaviour.sms
        if outcome in ("failed", "reject"):
            return steps + ["failed"]
        if outcome == "undelivered":
            return steps + ["sent", "undelivered"]
        if outcome in ("no_dlr", "lost"):
            return steps + ["sent"]
        return steps + ["sent", "delivered"]

    def _lifecycle(self, sid: str, behaviour: Behaviour, gen: int) -> None:
        """Move the message through its statuses, deliver it to the handset, post status callbacks."""
        delay = (behaviour.callback_delay_ms if behaviour.callback_delay_ms is not None
                 else self.config.callback_delay_ms) / 1000.0
        with self.state.lock:
            message = self.state.messages.get(sid)
            if message is None:
                return
            if message.from_ is None and self.config.numbers:
                message.from_ = self.config.numbers[0]  # the service picks a sender from its pool
        steps = self._steps(message, behaviour)
        held: list[list[tuple[str, str]]] = []
        for status in steps:
            if not self.state.sleep(delay, gen):
                return
            self._apply(message, status, behaviour)
            if status == "delivered" or (status == "sent" and behaviour.sms == "no_dlr"):
                self._deliver(message, behaviour, gen)
            if message.status_callback:
                params = self._callback_params(message, status)
                if behaviour.reorder_callbacks:
                    held.append(params)
                else:
                    self._post_status(message, params, behaviour.duplicate_callbacks)
        if len(held) >= 2:
            held[-1], held[-2] = held[-2], held[-1]
        for index, params in enumerate(held):
            if index and not self.state.sleep(delay, gen):
                return
            self._post_status(message, params, behaviour.duplicate_callbacks)

    def _apply(self, message: MessageRecord, status: str, behaviour: Behaviour) -> None:
        """Set the resource status (and error code / sent date) under the lock."""
        with self.state.lock:
            message.status = status
            message.date_updated = utcnow()
            if status == "sent":
                message.date_sent = message.date_updated
            if status in ("failed", "undelivered"):
                message.error_code = behaviour.sms_error_code or DEFAULT_ASYNC_ERRORS[status]

    def _callback_params(self, message: MessageRecord, status: str) -> list[tuple[str, str]]:
        """The exact parameter set of an SMS status callback."""
        params = [("AccountSid", message.account_sid), ("ApiVersion", API_VERSION),
                  ("From", message.from_ or ""), ("MessageSid", message.sid), ("MessageStatus", status)]
        if message.messaging_service_sid:
            params.append(("MessagingServiceSid", message.messaging_service_sid))
        params += [("SmsSid", message.sid), ("SmsStatus", status), ("To", message.to)]
        if status in ("failed", "undelivered"):
            params.append(("ErrorCode", str(message.error_code)))
        if status in ("delivered", "undelivered"):
            params.append(("RawDlrDoneDate", utcnow().strftime("%y%m%d%H%M")))
        return params

    def _post_status(self, message: MessageRecord, params: list[tuple[str, str]], duplicate: bool) -> None:
        """POST one status callback (twice, with the same idempotency token, when duplicating)."""
        status = dict(params)["MessageStatus"]
        token = str(uuid.uuid4())
        for _ in range(2 if duplicate else 1):
            result = self.sim.webhooks.send("sms-status", message.status_callback or "", params, "POST",
                                            sid=message.sid, token=token)
            with self.state.lock:
                message.callbacks.append({"status": status, "http_status": result.status, "error": result.error})

    def _deliver(self, message: MessageRecord, behaviour: Behaviour, gen: int) -> None:
        """Put the message in the handset's inbox and schedule the handset's automatic reply."""
        with self.state.lock:
            if not self.state.alive(gen):
                return
            handset = self.state.touch(message.to)
            if message.sid not in handset.inbox:
                handset.inbox.append(message.sid)
        if message.kind == "api" and behaviour.sms_reply is not None and message.from_:
            text = behaviour.sms_reply.replace("{code}", numbering.first_code(message.body))
            owned = message.from_

            def reply(job_gen: int) -> None:
                if self.state.sleep(behaviour.sms_reply_delay_ms / 1000.0, job_gen):
                    self.receive(message.to, text, owned)

            self.sim.submit(reply)

    # -- inbound -------------------------------------------------------------------
    def default_owned_for(self, number: str) -> str:
        """The owned number a handset replies to: whoever messaged it last, else the first owned number."""
        with self.state.lock:
            handset = self.state.handsets.get(number)
            for sid in reversed(handset.inbox if handset else []):
                sender = self.state.messages[sid].from_
                if sender in self.config.numbers:
                    return sender
        return self.config.numbers[0]

    def receive(self, number: str, body: str, to: str | None = None) -> MessageRecord:
        """An SMS from a handset to an owned number: opt-out keywords, then the inbound webhook."""
        if not numbering.is_valid_e164(number):
            raise ValueError(f"not a valid E.164 number: {number}")
        owned = to or self.default_owned_for(number)
        if owned not in self.config.numbers:
            raise ValueError(f"{owned} is not one of the simulator's numbers")
        message = MessageRecord(sid=new_sid("SM"), account_sid=self.config.account_sid, to=owned, from_=number,
                                body=body, status="received", direction="inbound", kind="handset",
                                num_segments=numbering.count_segments(body))
        keyword = keyword_of(body)
        with self.state.lock:
            self.state.messages[message.sid] = message
            self.state.touch(number).sent.append(message.sid)
            if keyword == "stop":
                self.state.optouts.add((owned, number))
            elif keyword == "start":
                self.state.optouts.discard((owned, number))
            if keyword is not None:
                self._store_reply(owned, number, AUTO_REPLIES[keyword], kind="auto")
        self.sim.submit(lambda gen: self._forward(message.sid, gen))
        return message

    def _inbound_params(self, message: MessageRecord) -> list[tuple[str, str]]:
        """Twilio's inbound-SMS webhook parameters."""
        sender = message.from_ or ""
        return [
            ("ToCountry", numbering.country(message.to)), ("ToState", ""), ("SmsMessageSid", message.sid),
            ("NumMedia", "0"), ("ToCity", ""), ("FromZip", ""), ("SmsSid", message.sid), ("FromState", ""),
            ("SmsStatus", "received"), ("FromCity", ""), ("Body", message.body),
            ("FromCountry", numbering.country(sender)), ("To", message.to), ("ToZip", ""),
            ("NumSegments", str(message.num_segments)), ("MessageSid", message.sid),
            ("AccountSid", message.account_sid), ("From", sender), ("ApiVersion", API_VERSION),
        ]

    def _forward(self, sid: str, gen: int) -> None:
        """POST the inbound SMS to the number's SMS URL and act on the TwiML answer."""
        with self.state.lock:
            message = self.state.messages[sid]
        url = self.config.sms_url
        if not url:
            with self.state.lock:
                message.webhook_error = "no SMS URL configured (SIM_SMS_URL)"
            return
        params, method = self._inbound_params(message), "POST"
        for _ in range(MAX_MESSAGING_REDIRECTS + 1):
            result = self.sim.webhooks.send("sms-inbound", url, params, method, sid=sid)
            with self.state.lock:
                message.webhook_status = result.status
                message.webhook_error = result.error
            if not result.ok or not self.state.alive(gen):
                return
            kind = media_type(result.content_type)
            if kind == "text/plain":
                text = result.text().strip()
                if text:
                    self._send_reply(message, text, None, None, None, gen)
                return
            if not result.body.strip():
                return
            try:
                replies, redirects = parse_messaging(result.body)
            except TwimlError as exc:
                with self.state.lock:
                    message.webhook_error = f"{exc.code}: {exc}"
                return
            for reply in replies:
                callback = urljoin(url, reply.status_callback) if reply.status_callback else None
                self._send_reply(message, reply.body, reply.to, reply.from_, callback, gen)
            if not redirects:
                return
            url, method = urljoin(url, redirects[0].url), redirects[0].method

    def _store_reply(self, owned: str, number: str, body: str, kind: str) -> MessageRecord:
        """Record an outbound-reply message as delivered to the handset (caller holds the lock)."""
        reply = MessageRecord(sid=new_sid("SM"), account_sid=self.config.account_sid, to=number, from_=owned,
                              body=body, status="delivered", direction="outbound-reply", kind=kind,
                              num_segments=numbering.count_segments(body))
        reply.date_sent = reply.date_created
        self.state.messages[reply.sid] = reply
        self.state.touch(number).inbox.append(reply.sid)
        return reply

    def _send_reply(self, inbound: MessageRecord, body: str, to: str | None, from_: str | None,
                    status_callback: str | None, gen: int) -> None:
        """Send a TwiML <Message> reply through the normal delivery path (opt-outs still apply)."""
        target = to or inbound.from_ or ""
        sender = from_ or inbound.to
        reply = MessageRecord(sid=new_sid("SM"), account_sid=self.config.account_sid, to=target, from_=sender,
                              body=body, status="queued", direction="outbound-reply", kind="reply",
                              num_segments=numbering.count_segments(body), status_callback=status_callback)
        with self.state.lock:
            self.state.messages[reply.sid] = reply
            blocked = self.state.is_blocked(sender, target, via_service=False)
            if blocked:
                reply.status, reply.error_code = "failed", 21610
        if blocked or not numbering.is_valid_e164(target):
            with self.state.lock:
                reply.status = "failed"
                reply.error_code = reply.error_code or 21211
            return
        behaviour, _ = self.state.behaviour_for(target)
        self._lifecycle(reply.sid, behaviour, gen)


def rest_error_for(behaviour: Behaviour, to: str) -> TwilioError:
    """The REST error a 'reject' behaviour produces (exposed for tests and docs)."""
    code = behaviour.sms_error_code or 21612
    return twilio_error(code, to, status=behaviour.sms_http_status or http_status_for(code))
