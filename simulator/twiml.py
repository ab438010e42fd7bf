"""TwiML parsing (xml.etree) into verb dataclasses, for voice documents and messaging replies."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Union

DTMF_KEYS = frozenset("0123456789*#")
VOICE_CONTENT_TYPES = ("text/xml", "application/xml", "text/html")


class TwimlError(Exception):
    """A TwiML document Twilio could not use; `code` is Twilio's error code (12100, 12300, ...)."""

    def __init__(self, code: int, message: str) -> None:
        """Store the Twilio error code with the message."""
        super().__init__(message)
        self.code = code


@dataclass
class Say:
    """<Say voice language loop>text</Say>."""

    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1


@dataclass
class Play:
    """<Play loop digits>url</Play>."""

    url: str
    loop: int = 1
    digits: str | None = None


@dataclass
class Pause:
    """<Pause length/>."""

    length: int = 1


@dataclass
class Gather:
    """<Gather> with Twilio's defaults; action None means 'the current document URL'."""

    input: str = "dtmf"
    action: str | None = None
    method: str = "POST"
    timeout: int = 5
    num_digits: int | None = None
    finish_on_key: str = "#"
    action_on_empty_result: bool = False
    prompts: list["Say | Play | Pause | Unsupported"] = field(default_factory=list)

    @property
    def accepts_dtmf(self) -> bool:
        """True when input includes dtmf."""
        return "dtmf" in self.input.split()


@dataclass
class Redirect:
    """<Redirect method>url</Redirect>."""

    url: str
    method: str = "POST"


@dataclass
class Hangup:
    """<Hangup/>."""


@dataclass
class Reject:
    """<Reject reason/> (only meaningful on inbound calls)."""

    reason: str = "rejected"


@dataclass
class Unsupported:
    """A verb the simulator records but does not execute (Dial, Record, ...)."""

    verb: str
    attributes: dict[str, str] = field(default_factory=dict)


Verb = Union[Say, Play, Pause, Gather, Redirect, Hangup, Reject, Unsupported]


@dataclass
class MessageReply:
    """<Message to from action method statusCallback>body</Message> in a messaging response."""

    body: str
    to: str | None = None
    from_: str | None = None
    status_callback: str | None = None


def _int_attr(element: ET.Element, name: str, default: int | None, minimum: int = 0) -> int | None:
    """Integer attribute; invalid or below minimum falls back to the default (Twilio warns and goes on)."""
    raw = element.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        return default
    return value if value >= minimum else default


def _text(element: ET.Element) -> str:
    """All text inside an element (SSML children included), whitespace collapsed."""
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip()


def _local(tag: str) -> str:
    """Tag name without an XML namespace."""
    return tag.rsplit("}", 1)[-1]


def parse_document(body: bytes | str) -> ET.Element:
    """Parse a TwiML document and return its <Response> root (raises TwimlError 12100)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise TwimlError(12100, f"Document parse failure: {exc}") from None
    if _local(root.tag) != "Response":
        raise TwimlError(12100, f"Document parse failure: root element is <{_local(root.tag)}>, not <Response>")
    return root


def _prompt(element: ET.Element) -> Say | Play | Pause | Unsupported:
    """A verb allowed inside <Gather> (Say, Play, Pause); anything else is recorded as unsupported."""
    tag = _local(element.tag)
    if tag == "Say":
        return Say(text=_text(element), voice=element.get("voice") or "man",
                   language=element.get("language") or "en-US", loop=_int_attr(element, "loop", 1) or 0)
    if tag == "Play":
        return Play(url=_text(element), loop=_int_attr(element, "loop", 1) or 0, digits=element.get("digits"))
    if tag == "Pause":
        return Pause(length=_int_attr(element, "length", 1) or 0)
    return Unsupported(verb=tag, attributes=dict(element.attrib))


def _verb(element: ET.Element) -> Verb:
    """Convert one child of <Response> into a verb."""
    tag = _local(element.tag)
    if tag in ("Say", "Play", "Pause"):
        return _prompt(element)
    if tag == "Gather":
        finish = element.get("finishOnKey")
        return Gather(
            input=(element.get("input") or "dtmf").strip() or "dtmf",
            action=element.get("action") or None,
            method=(element.get("method") or "POST").upper(),
            timeout=_int_attr(element, "timeout", 5, minimum=1) or 5,
            num_digits=_int_attr(element, "numDigits", None, minimum=1),
            finish_on_key="#" if finish is None else finish.strip(),
            action_on_empty_result=(element.get("actionOnEmptyResult") or "").strip().lower() == "true",
            prompts=[_prompt(child) for child in element],
        )
    if tag == "Redirect":
        return Redirect(url=_text(element), method=(element.get("method") or "POST").upper())
    if tag == "Hangup":
        return Hangup()
    if tag == "Reject":
        return Reject(reason=element.get("reason") or "rejected")
    return Unsupported(verb=tag, attributes=dict(element.attrib))


def parse_voice(body: bytes | str) -> list[Verb]:
    """Parse a voice TwiML document into its top-level verbs."""
    return [_verb(child) for child in parse_document(body)]


def parse_messaging(body: bytes | str) -> tuple[list[MessageReply], list[Redirect]]:
    """Parse a messaging TwiML response into <Message> replies and any <Redirect>s."""
    replies: list[MessageReply] = []
    redirects: list[Redirect] = []
    for child in parse_document(body):
        tag = _local(child.tag)
        if tag == "Message":
            body_el = next((c for c in child if _local(c.tag) == "Body"), None)
            if body_el is not None:
                text = "".join(body_el.itertext())
            else:
                text = (child.text or "")
            replies.append(MessageReply(body=text.strip(), to=child.get("to"), from_=child.get("from"),
                                        status_callback=child.get("statusCallback") or child.get("action")))
        elif tag == "Redirect":
            redirects.append(Redirect(url=_text(child), method=(child.get("method") or "POST").upper()))
    return replies, redirects


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header value, lower case."""
    return content_type.split(";", 1)[0].strip().lower()
