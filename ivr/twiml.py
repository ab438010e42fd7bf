"""Pure TwiML builders for the IVR flows; every text and voice comes from the locale's voice.toml."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twilio.twiml.voice_response import Gather, VoiceResponse

from gateway import i18n

SECTION = "voice"
# Seconds Twilio waits for a key after the prompt (and between keys).
KEY_TIMEOUT = 6
FINISH_KEY = "#"
REPEAT_CODE = "1"


class Choice(str, Enum):
    """What a caller did at the confirm menu."""

    APPROVE = "approve"
    FRAUD = "fraud"
    SILENCE = "silence"
    OTHER = "other"


def choice(digits: str, finished_on_key: str) -> Choice:
    """Read a menu Gather: "#" approves, "0#" reports fraud (the original product's keys)."""
    if finished_on_key == FINISH_KEY:
        if digits == "":
            return Choice.APPROVE
        if digits == "0":
            return Choice.FRAUD
    return Choice.SILENCE if digits == "" and finished_on_key == "" else Choice.OTHER


@dataclass(frozen=True)
class Speaker:
    """How one locale speaks: its <Say> voice and language, and its texts."""

    locale: str
    voice: str
    language: str

    @classmethod
    def of(cls, locale: str) -> "Speaker":
        """The speaker of a locale (English settings fill in what a locale lacks)."""
        return cls(locale, i18n.setting(locale, SECTION, "voice"), i18n.setting(locale, SECTION, "language"))

    def say(self, parent: VoiceResponse | Gather, key: str, **values: object) -> None:
        """Add a <Say> of one text to a response or a gather."""
        parent.say(i18n.text(self.locale, SECTION, key, **values), voice=self.voice, language=self.language)


def spelled(code: str) -> str:
    """A code spelled digit by digit, so text-to-speech never reads it as one number."""
    return ", ".join(code)


def menu(locale: str, org: str, action: str, retry: bool = False) -> VoiceResponse:
    """The confirm menu: # approves, 0# reports fraud; silence or a lone key still posts to action."""
    speaker = Speaker.of(locale)
    response = VoiceResponse()
    if retry:
        speaker.say(response, "invalid")
    # finishOnKey stays "#": a lone # arrives as Digits="" with FinishedOnKey="#", and
    # actionOnEmptyResult makes silence post too, so the gateway decides every outcome itself.
    gather = response.gather(
        input="dtmf", action=action, method="POST", timeout=KEY_TIMEOUT, finish_on_key=FINISH_KEY,
        action_on_empty_result=True,
    )
    speaker.say(gather, "menu", org=org)
    return response


def read_code(locale: str, org: str, code: str, action: str, first: bool = True,
              offer_repeat: bool = True) -> VoiceResponse:
    """The code read aloud digit by digit, twice; 1 hears it again (while offered); then goodbye."""
    speaker = Speaker.of(locale)
    response = VoiceResponse()
    parent: VoiceResponse | Gather = response
    if offer_repeat:
        parent = response.gather(input="dtmf", action=action, method="POST", timeout=KEY_TIMEOUT, num_digits=1,
                                 finish_on_key="")
    speaker.say(parent, "code" if first else "code_again", org=org, digits=spelled(code))
    parent.pause(length=1)
    speaker.say(parent, "code_again", digits=spelled(code))
    if offer_repeat:
        speaker.say(parent, "code_repeat")
    speaker.say(response, "goodbye")
    response.hangup()
    return response


def farewell(locale: str, key: str) -> VoiceResponse:
    """A closing sentence (approved, fraud, no_input, ended, goodbye) and hang up."""
    response = VoiceResponse()
    Speaker.of(locale).say(response, key)
    response.hangup()
    return response


def hang_up() -> VoiceResponse:
    """Hang up without a word (an answering machine must hear nothing)."""
    response = VoiceResponse()
    response.hangup()
    return response
