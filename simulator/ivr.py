"""Executes voice TwiML for an answered call: fetches documents, speaks, gathers digits, follows actions."""
from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urljoin

from .models import CallRecord, iso, utcnow
from .twiml import (DTMF_KEYS, VOICE_CONTENT_TYPES, Gather, Hangup, Pause, Play, Redirect, Reject, Say, TwimlError,
                    Unsupported, Verb, media_type, parse_voice)
from .validation import is_valid_url
from .webhooks import WebhookResult

if TYPE_CHECKING:
    from .voice import VoiceEngine

APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
LOOP_FOREVER_CAP = 5


class _End:
    """Marker: the call ends (hang-up, error, limit, end requested)."""


class _Continue:
    """Marker: go on with the next verb."""


END, CONTINUE = _End(), _Continue()
Document = tuple[list[Verb], Union[str, None]]
Step = Union[_End, _Continue, Document]


class IvrSession:
    """Runs the TwiML of one answered call until hang-up or until the verbs run out."""

    def __init__(self, engine: "VoiceEngine", call: CallRecord, gen: int) -> None:
        """Bind to the engine, the call and the state generation it belongs to."""
        self.engine = engine
        self.sim = engine.sim
        self.state = engine.state
        self.config = engine.config
        self.call = call
        self.gen = gen
        self.verbs_run = 0
        self.requests = 0

    # -- helpers ---------------------------------------------------------------------
    def stopped(self) -> bool:
        """True when the call must stop (ended via REST/handset, or the simulator was reset)."""
        return not self.state.alive(self.gen) or self.call.end_requested is not None

    def _log(self, kind: str, **fields: Any) -> None:
        """Append a transcript entry."""
        with self.state.lock:
            self.call.transcript.append({"kind": kind, "time": iso(utcnow()), **fields})

    def _error(self, code: int, message: str, url: str | None = None) -> _End:
        """Record an application error, play Twilio's apology and end the call."""
        with self.state.lock:
            self.call.errors.append({"code": code, "message": message, "url": url})
        self._log("error", code=code, message=message, url=url)
        self._log("say", text=APPLICATION_ERROR, voice="man", language="en-US")
        return END

    # -- documents -------------------------------------------------------------------
    def run(self) -> None:
        """Fetch the first document (Url or inline Twiml) and execute documents until the call ends."""
        call = self.call
        if call.send_digits:
            self._log("send_digits", digits=call.send_digits)
        if call.url:
            step = self._fetch(call.url, call.method, self.engine.amd_params(call), fallback=True)
        else:
            step = self._parse_inline(call.twiml or "")
        while isinstance(step, tuple):
            step = self._execute(*step)

    def _parse_inline(self, twiml: str) -> Step:
        """Parse inline TwiML (Twiml parameter or REST update)."""
        try:
            return parse_voice(twiml), None
        except TwimlError as exc:
            return self._error(exc.code, str(exc))

    def _fetch(self, url: str, method: str, extra: list[tuple[str, str]], fallback: bool = False) -> Step:
        """Request TwiML from url with the voice parameters (+extra) and parse the answer."""
        if self.stopped():
            return END
        self.requests += 1
        if self.requests > self.config.max_requests_per_call:
            return self._error(11200, "simulator limit: too many TwiML requests for one call", url)
        params = self.engine.base_params(self.call, "in-progress") + extra
        result = self.sim.webhooks.send("voice", url, params, method, sid=self.call.sid)
        code, problem, step = self._interpret(result, url)
        if code is None:
            return step
        if fallback and self.call.fallback_url and not self.stopped():
            params = params + [("ErrorCode", str(code)), ("ErrorUrl", url)]
            result = self.sim.webhooks.send("voice-fallback", self.call.fallback_url, params,
                                            self.call.fallback_method, sid=self.call.sid)
            fb_code, fb_problem, step = self._interpret(result, self.call.fallback_url)
            if fb_code is None:
                with self.state.lock:
                    self.call.errors.append({"code": code, "message": problem, "url": url})
                return step
            code, problem, url = fb_code, fb_problem, self.call.fallback_url
        return self._error(code, problem or "error", url)

    def _interpret(self, result: WebhookResult, url: str) -> tuple[int | None, str | None, Step]:
        """Turn an HTTP answer into a document, or (error code, message) when Twilio would fail."""
        if self.stopped():
            return None, None, END
        if not result.ok or result.error_code is not None:
            return result.error_code or 11200, result.error or f"HTTP {result.status}", END
        body, content_type = result.body, result.content_type
        kind = media_type(content_type)
        if kind in VOICE_CONTENT_TYPES:
            try:
                return None, None, (parse_voice(body), url)
            except TwimlError as exc:
                return exc.code, str(exc), END
        if kind == "text/plain":
            return None, None, ([Say(text=body.decode("utf-8", "replace").strip())], url)
        if kind.startswith("audio/"):
            return None, None, ([Play(url=url)], url)
        return 12300, f"Invalid Content-Type: {content_type or '(none)'}", END

    # -- verbs -----------------------------------------------------------------------
    def _take_redirect(self) -> Step | None:
        """A pending REST-update redirect, as the next document step."""
        with self.state.lock:
            redirect, self.call.redirect = self.call.redirect, None
        if redirect is None:
            return None
        url, method, twiml = redirect
        self._log("redirect", url=url, source="rest-update")
        return self._fetch(url, method, []) if url else self._parse_inline(twiml or "")

    def _execute(self, verbs: list[Verb], doc_url: str | None) -> Step:
        """Run the verbs of one document; return the next document or END."""
        for verb in verbs:
            if self.stopped():
                return END
            pending = self._take_redirect()
            if pending is not None:
                return pending
            self.verbs_run += 1
            if self.verbs_run > self.config.max_verbs_per_call:
                return self._error(11200, "simulator limit: too many verbs for one call", doc_url)
            step = self._verb(verb, doc_url)
            if not isinstance(step, _Continue):
                return step
        return self._take_redirect() or END

    def _verb(self, verb: Verb, doc_url: str | None) -> Step:
        """Execute one top-level verb."""
        if isinstance(verb, (Say, Play, Pause)):
            self._prompt(verb, barge_in=False)
            return CONTINUE
        if isinstance(verb, Gather):
            return self._gather(verb, doc_url)
        if isinstance(verb, Redirect):
            target = self._resolve(doc_url, verb.url)
            self._log("redirect", url=target, method=verb.method)
            if target is None:
                return self._error(11100, f"Invalid URL format in <Redirect>: {verb.url!r}", doc_url)
            return self._fetch(target, verb.method, [])
        if isinstance(verb, (Hangup, Reject)):
            self._log("hangup" if isinstance(verb, Hangup) else "reject")
            return END
        assert isinstance(verb, Unsupported)
        self._log("unsupported", verb=verb.verb, attributes=verb.attributes)
        return CONTINUE

    def _prompt(self, verb: Say | Play | Pause | Unsupported, barge_in: bool, interrupted: bool = False) -> None:
        """Speak/play/pause: add to the transcript and to the simulated call time (no real sleeping)."""
        marks = {"interrupted": True} if interrupted else {}
        if isinstance(verb, Unsupported):
            self._log("unsupported", verb=verb.verb, attributes=verb.attributes)
            return
        if isinstance(verb, Pause):
            self._log("pause", length=verb.length, **marks)
            self.call.sim_seconds += verb.length
            return
        repeats = verb.loop if verb.loop > 0 else (1 if barge_in else LOOP_FOREVER_CAP)
        for _ in range(1 if interrupted else repeats):
            if isinstance(verb, Say):
                self._log("say", text=verb.text, voice=verb.voice, language=verb.language, **marks)
                self.call.sim_seconds += max(1.0, len(verb.text.split()) / 2.5)
            else:
                self._log("play", url=verb.url, digits=verb.digits, **marks)
                self.call.sim_seconds += 3.0

    @staticmethod
    def _resolve(doc_url: str | None, target: str | None) -> str | None:
        """Resolve a (possibly relative) URL against the current document URL; None if unusable."""
        if target is None:
            return doc_url
        resolved = urljoin(doc_url, target) if doc_url else target
        return resolved if is_valid_url(resolved) else None

    def _gather(self, gather: Gather, doc_url: str | None) -> Step:
        """Twilio's <Gather>: nested prompts (a key stops them), collect DTMF, then request the action or fall through.

        Keys count only while a Gather listens, from its first nested prompt to its end; keys pressed
        before it (during a top-level <Say>, or while Twilio waits for the previous action's answer)
        and keys left over when it ends are lost. Twilio documents no buffering between verbs, and
        its Gather troubleshooting article (support.twilio.com/hc/en-us/articles/223180068, "User
        Behavior") warns that keys pressed before the <Gather> begins are missed: the stricter reading.
        """
        call = self.call
        with self.state.lock:
            call.listening = gather.accepts_dtmf and call.mode not in ("voicemail", "silent")
        try:
            self._nested_prompts(gather)
            if self.stopped():
                return END
            collected = self._collect(gather)
        finally:
            with self.state.lock:
                call.listening = False
                call.unheard.extend(call.keybuf)
                call.keybuf.clear()
        if collected is None:
            return self._take_redirect() or END
        digits, finished_on_key, ended_by = collected
        # twilio.com/docs/api/twiml/gather, "action": a finishOnKey pressed before any other digit is
        # no input, like a timeout; no documented field tells the two apart, so none does here.
        finished_on_key = finished_on_key if digits else ""
        submit = bool(digits) or gather.action_on_empty_result
        action = self._resolve(doc_url, gather.action) if submit else None
        entry = {"digits": digits, "finished_on_key": finished_on_key, "ended_by": ended_by,
                 "submitted": submit, "action": action, "method": gather.method,
                 "num_digits": gather.num_digits, "finish_on_key": gather.finish_on_key,
                 "timeout": gather.timeout, "input": gather.input}
        with self.state.lock:
            call.gathers.append(entry)
        self._log("gather", **entry)
        if not submit:
            return CONTINUE  # no input: Twilio goes on with the verb after the <Gather>
        if action is None:
            return self._error(11100, f"Invalid URL format for <Gather action>: {gather.action!r}", doc_url)
        return self._fetch(action, gather.method, [("Digits", digits), ("FinishedOnKey", finished_on_key)])

    def _nested_prompts(self, gather: Gather) -> None:
        """Play the Gather's nested verbs; a key pressed during them stops the rest (barge-in)."""
        barge_in = self._barges_in(gather)
        for prompt in gather.prompts:
            self._prompt(prompt, barge_in=barge_in, interrupted=barge_in)
            if barge_in:
                # "After the first digit is received the audio will stop playing"
                # (twilio.com/docs/api/twiml/gather, nesting): the remaining nested verbs are skipped.
                return

    def _barges_in(self, gather: Gather) -> bool:
        """True when the caller presses a key while the Gather's prompt is still playing."""
        if not gather.accepts_dtmf:
            return False
        with self.state.lock:
            if self.call.keybuf:
                return True
            script = self.call.script
            return self.call.mode == "answer" and self.call.barge_in and bool(script) and bool(script[0])

    def _collect(self, gather: Gather) -> tuple[str, str, str] | None:
        """Read keys for one Gather; (digits, FinishedOnKey, ended_by) or None if the call stopped."""
        call = self.call
        finish = gather.finish_on_key[:1]
        digits: list[str] = []

        def feed(key: str) -> str | None:
            if finish and key == finish:
                return "finish_key"
            digits.append(key)
            if gather.num_digits is not None and len(digits) >= gather.num_digits:
                return "num_digits"
            return None

        if call.mode in ("voicemail", "silent") or not gather.accepts_dtmf:
            call.sim_seconds += gather.timeout
            return "", "", "timeout"
        with self.state.lock:
            entry = call.script.pop(0) if call.mode == "answer" and call.script else None
        if entry is not None:
            keys = [key for key in entry if key in DTMF_KEYS]
            with self.state.lock:
                call.pressed.extend(keys)
            for index, key in enumerate(keys):
                ended = feed(key)
                if ended:
                    with self.state.lock:
                        call.unheard.extend(keys[index + 1:])  # pressed after the Gather ended
                    return "".join(digits), key if ended == "finish_key" else "", ended
            call.sim_seconds += gather.timeout
            return "".join(digits), "", "timeout"
        wait_s = gather.timeout if call.mode == "interactive" else 0.0
        deadline = time.monotonic() + wait_s
        while True:
            with self.state.cond:
                call.waiting_for_keys = True
                left = max(0.0, deadline - time.monotonic())
                call.gather_state = {"timeout": gather.timeout, "num_digits": gather.num_digits,
                                     "finish_on_key": gather.finish_on_key, "digits": "".join(digits),
                                     "expires_at": iso(utcnow() + timedelta(seconds=left))}
                try:
                    while not call.keybuf and not self.stopped() and call.redirect is None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self.state.cond.wait(remaining)
                    if self.stopped() or call.redirect is not None:
                        return None
                    key = call.keybuf.pop(0) if call.keybuf else None
                finally:
                    call.waiting_for_keys = False
                    call.gather_state = None
            if key is None:
                call.sim_seconds += gather.timeout
                return "".join(digits), "", "timeout"
            ended = feed(key)
            if ended:
                return "".join(digits), key if ended == "finish_key" else "", ended
            deadline = time.monotonic() + wait_s
