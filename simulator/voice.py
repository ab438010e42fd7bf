"""Voice engine: call lifecycle (ringing, outcomes, AMD), progress callbacks, REST updates, key presses."""
from __future__ import annotations

import math
import time
import uuid
from typing import TYPE_CHECKING

from . import numbering
from .errors import TwilioError, twilio_error
from .models import CallRecord, new_sid, rfc2822, utcnow
from .twiml import DTMF_KEYS
from .validation import CallRequest

if TYPE_CHECKING:
    from .core import Simulator

API_VERSION = "2010-04-01"
AMD_DURATION_MS = {"human": "2100", "machine_start": "3700", "machine_end_beep": "9800"}
UPDATE_WAIT_S = 2.0


class CallStateError(Exception):
    """A control-API action that does not fit the call's state (e.g. no active call)."""


class VoiceEngine:
    """Creates calls and runs each one on the call pool until it ends."""

    def __init__(self, sim: "Simulator") -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.state = sim.state
        self.config = sim.config

    def create(self, req: CallRequest) -> CallRecord:
        """Accept a validated Create Call request and start the call in the background."""
        behaviour, _ = self.state.behaviour_for(req.to)
        call = CallRecord(
            sid=new_sid("CA"), account_sid=self.config.account_sid, to=req.to, from_=req.from_, url=req.url,
            method=req.method, twiml=req.twiml, fallback_url=req.fallback_url, fallback_method=req.fallback_method,
            status_callback=req.status_callback, status_callback_method=req.status_callback_method,
            events=req.events, timeout=req.timeout, machine_detection=req.machine_detection,
            async_amd=req.async_amd, async_amd_callback=req.async_amd_callback,
            async_amd_callback_method=req.async_amd_callback_method, send_digits=req.send_digits,
            mode=behaviour.call_mode(), script=list(behaviour.keys),
            ring_ms=behaviour.ring_ms if behaviour.ring_ms is not None else self.config.ring_ms,
            duplicate_callbacks=behaviour.duplicate_callbacks, barge_in=behaviour.barge_in)
        with self.state.lock:
            self.state.calls[call.sid] = call
            self.state.touch(req.to).calls.append(call.sid)
        self.sim.submit(lambda gen: self._run(call, gen), pool=self.sim.call_pool)
        return call

    # -- parameters and callbacks ------------------------------------------------------
    def base_params(self, call: CallRecord, call_status: str) -> list[tuple[str, str]]:
        """The voice parameters Twilio sends on every request about this call."""
        to_country, from_country = numbering.country(call.to), numbering.country(call.from_)
        return [
            ("AccountSid", call.account_sid), ("ApiVersion", API_VERSION), ("CallSid", call.sid),
            ("CallStatus", call_status), ("Called", call.to), ("CalledCity", ""), ("CalledCountry", to_country),
            ("CalledState", ""), ("CalledZip", ""), ("Caller", call.from_), ("CallerCity", ""),
            ("CallerCountry", from_country), ("CallerState", ""), ("CallerZip", ""),
            ("Direction", "outbound-api"), ("From", call.from_), ("FromCity", ""), ("FromCountry", from_country),
            ("FromState", ""), ("FromZip", ""), ("To", call.to), ("ToCity", ""), ("ToCountry", to_country),
            ("ToState", ""), ("ToZip", ""),
        ]

    def _callback(self, call: CallRecord, event: str, call_status: str, gen: int,
                  extra: list[tuple[str, str]] | None = None) -> None:
        """Post one call-progress status callback if the call subscribed to the event."""
        if not call.status_callback or event not in call.events:
            return
        if not self.state.sleep(self.config.callback_delay_ms / 1000.0, gen):
            return
        with self.state.lock:
            sequence = call.sequence
            call.sequence += 1
        params = self.base_params(call, call_status) + [
            ("CallbackSource", "call-progress-events"), ("Timestamp", rfc2822(utcnow()) or ""),
            ("SequenceNumber", str(sequence))]
        if call.machine_detection and call.answered_by and not call.async_amd:
            params.append(("AnsweredBy", call.answered_by))
        params += extra or []
        token = str(uuid.uuid4())
        copies = 2 if call.duplicate_callbacks and event == "completed" else 1
        for _ in range(copies):
            self.sim.webhooks.send("call-status", call.status_callback, params, call.status_callback_method,
                                   sid=call.sid, token=token)

    # -- the call itself ---------------------------------------------------------------
    def _set_status(self, call: CallRecord, status: str) -> None:
        """Set the resource status under the lock and wake waiters."""
        with self.state.cond:
            call.status = status
            call.date_updated = utcnow()
            self.state.cond.notify_all()

    def _run(self, call: CallRecord, gen: int) -> None:
        """Ring the handset, decide the outcome, run the TwiML when answered, then hang up."""
        from .ivr import IvrSession

        self._callback(call, "initiated", "initiated", gen)
        if call.mode == "failed":
            self._finish(call, "failed", 404, gen)
            return
        self._set_status(call, "ringing")
        self._callback(call, "ringing", "ringing", gen)
        ring_s = min(call.ring_ms / 1000.0, call.timeout)
        if not self.state.wait_until(lambda: call.end_requested is not None, ring_s, gen):
            return
        if call.end_requested is not None:
            busy = call.end_requested == "handset"
            self._finish(call, "busy" if busy else "canceled", 486 if busy else 487, gen)
            return
        if call.mode == "busy":
            self._finish(call, "busy", 486, gen)
            return
        if call.mode == "no-answer" or call.ring_ms > call.timeout * 1000:
            self._finish(call, "no-answer", 487, gen)
            return
        with self.state.cond:
            call.start_time = utcnow()
            call.answered_mono = time.monotonic()
            if call.machine_detection:
                if call.mode == "voicemail":
                    call.answered_by = ("machine_end_beep" if call.machine_detection == "DetectMessageEnd"
                                        else "machine_start")
                else:
                    call.answered_by = "human"
        self._set_status(call, "in-progress")
        self._callback(call, "answered", "in-progress", gen)
        if call.machine_detection and call.async_amd and call.async_amd_callback:
            self.sim.submit(lambda job_gen: self._post_async_amd(call))
        IvrSession(self, call, gen).run()
        if self.state.alive(gen):
            self._finish(call, "completed", 200, gen)

    def _post_async_amd(self, call: CallRecord) -> None:
        """Post the asynchronous answering-machine-detection result."""
        answered_by = call.answered_by or "unknown"
        params = [("AccountSid", call.account_sid), ("AnsweredBy", answered_by), ("CallSid", call.sid),
                  ("MachineDetectionDuration", AMD_DURATION_MS.get(answered_by, "3000"))]
        self.sim.webhooks.send("amd-status", call.async_amd_callback or "", params,
                               call.async_amd_callback_method, sid=call.sid)

    def amd_params(self, call: CallRecord) -> list[tuple[str, str]]:
        """AnsweredBy/MachineDetectionDuration for the first (Url) request of a synchronous-AMD call."""
        if not call.machine_detection or call.async_amd or not call.answered_by:
            return []
        return [("AnsweredBy", call.answered_by),
                ("MachineDetectionDuration", AMD_DURATION_MS.get(call.answered_by, "3000"))]

    def _finish(self, call: CallRecord, status: str, sip: int, gen: int) -> None:
        """Make the call terminal and post the 'completed' progress callback."""
        with self.state.cond:
            if not call.active:
                return
            answered = call.start_time is not None
            elapsed = time.monotonic() - (call.answered_mono or time.monotonic())
            seconds = int(math.ceil(max(call.sim_seconds, elapsed))) if answered else 0
            call.duration = seconds
            call.end_time = utcnow()
            call.status = status
            call.date_updated = call.end_time
            self.state.cond.notify_all()
        billed = int(math.ceil(seconds / 60.0)) if answered and seconds else 0
        self._callback(call, "completed", status, gen, [
            ("CallDuration", str(seconds)), ("Duration", str(billed)), ("SipResponseCode", str(sip))])

    # -- control ---------------------------------------------------------------------
    def update(self, sid: str, status: str | None, url: str | None, method: str, twiml: str | None) -> CallRecord:
        """REST Update Call: Status=canceled|completed ends it; Url/Twiml redirects a live call."""
        with self.state.cond:
            call = self.state.calls.get(sid)
            if call is None:
                raise TwilioError(code=20404, status=404,
                                  message=f"The requested resource /Calls/{sid}.json was not found")
            if status is not None and status not in ("canceled", "completed"):
                raise twilio_error(20001, message=f"Status must be canceled or completed, got {status!r}")
            if status == "canceled":
                if call.status in ("queued", "ringing"):
                    call.end_requested = "canceled"
            elif status == "completed":
                if call.active:
                    call.end_requested = "completed"
            elif url is not None or twiml is not None:
                if call.status != "in-progress":
                    raise twilio_error(21220)
                call.redirect = (url, method, twiml)
            self.state.cond.notify_all()
            if call.end_requested is not None:
                self.state.cond.wait_for(lambda: not call.active, UPDATE_WAIT_S)
            return call

    def active_call(self, number: str) -> CallRecord | None:
        """The handset's most recent call that has not ended."""
        with self.state.lock:
            handset = self.state.handsets.get(number)
            for sid in reversed(handset.calls if handset else []):
                call = self.state.calls[sid]
                if call.active:
                    return call
        return None

    def press(self, number: str, keys: str) -> CallRecord:
        """Press DTMF keys on the handset's answered call; only a listening Gather hears them."""
        if not keys or any(k not in DTMF_KEYS for k in keys):
            raise ValueError("keys must be a non-empty string of 0-9, * and #")
        with self.state.cond:
            call = self.active_call(number)
            if call is None or call.status != "in-progress":
                raise CallStateError(f"{number} has no answered call")
            call.pressed.extend(keys)
            # Only a listening <Gather> hears keys; others are lost (see IvrSession._gather).
            (call.keybuf if call.listening else call.unheard).extend(keys)
            self.state.cond.notify_all()
            return call

    def hangup(self, number: str) -> CallRecord:
        """The handset hangs up (or declines a ringing call, which the caller sees as busy)."""
        with self.state.cond:
            call = self.active_call(number)
            if call is None:
                raise CallStateError(f"{number} has no active call")
            call.end_requested = "handset"
            self.state.cond.notify_all()
            self.state.cond.wait_for(lambda: not call.active, UPDATE_WAIT_S)
            return call
