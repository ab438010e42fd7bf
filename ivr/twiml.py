"""Pure TwiML builders for the IVR flows; every text and voice comes from the locale's voice.toml."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twilio.twiml.voice_response import Gather, VoiceResponse

from gateway import i18n

SECTION = "voice"
# Seconds Twilio waits for a key after the prompt (and between keys).
KEY_TIMEOUT = 6
# The original product's keys: # approves, 0 then # reports fraud; 1 hears the code again.
APPROVE_KEY = "#"
FRAUD_KEY = "0"
REPEAT_CODE = "1"
DTMF = frozenset("0123456789*#")

# How the confirm menu reads keys under Twilio's documented <Gather> rules.
#
# 1. A finish key never reaches us as a choice. twilio.com/docs/api/twiml/gather ("action"): when
#    "the caller enters the finishOnKey value before entering any other digits", Twilio does not
#    request the action URL (with actionOnEmptyResult it requests it as an empty result, which no
#    documented field tells apart from silence; ../shared/reference/twilio-wire.md §7). So every
#    Gather here has finishOnKey="" and # arrives in Digits like any other key.
# 2. # approves the moment it is pressed, so a menu Gather ends on its first key (numDigits="1");
#    with more digits it would wait its timeout after a lone #. A Gather cannot end on # alone but
#    keep listening after 0, so "0 then #" is two Gathers: the menu reads 0, and the answer to that
#    action is a second, one-key Gather in which # reports fraud (Step.FRAUD).
# 3. "0#" typed in one go: the # may be pressed while Twilio requests the action for the 0, when
#    no Gather listens. Twilio documents no buffering of such keys, and its troubleshooting article
#    (support.twilio.com/hc/en-us/articles/223180068, "User Behavior") says keys pressed before a
#    <Gather> begins are missed. The design holds either way: the 0 action changes no state and
#    answers at once with the fraud Gather, whose prompt is nested (the nested-verb barge-in of the
#    <Gather> reference: a key stops it), so a # that Twilio did keep is read immediately, and one it
#    dropped is asked for again ("to report fraud, press the pound key") instead of being lost.
#    A # at that step reports fraud, never approves: the step travels in the signed action URL.
# 4. Silence and wrong keys repeat the menu (the round travels in the action URL, so a retried
#    post never counts twice) and the last round ends in no_input; a hang-up never approves.


class Step(str, Enum):
    """Which Gather of a menu round the caller answered."""

    MENU = "menu"
    FRAUD = "fraud"  # the caller pressed 0: # now reports fraud


class Choice(str, Enum):
    """What a caller did at the confirm menu."""

    APPROVE = "approve"
    FRAUD_STARTED = "fraud_started"
    FRAUD = "fraud"
    SILENCE = "silence"
    OTHER = "other"
    BAD = "bad"  # not something our one-key Gathers can post


def choice(step: Step, digits: str) -> Choice:
    """Read one menu Gather's Digits (never FinishedOnKey: see the notes above)."""
    if digits == "":
        return Choice.SILENCE
    if len(digits) != 1 or digits not in DTMF:
        return Choice.BAD
    if digits == APPROVE_KEY:
        return Choice.APPROVE if step is Step.MENU else Choice.FRAUD
    if digits == FRAUD_KEY and step is Step.MENU:
        return Choice.FRAUD_STARTED
    return Choice.OTHER


@dataclass(frozen=True)
class Speaker:
    """How one locale speaks: its <Say> voice and language, and its texts."""

    locale: str
    voice: str
    language: str

    @classmethod
    def of(cls, locale: str, voice: str | None = None) -> "Speaker":
        """The speaker of a locale (English settings fill in what a locale lacks), optionally in another voice."""
        return cls(locale, voice or i18n.setting(locale, SECTION, "voice"), i18n.setting(locale, SECTION, "language"))

    def say(self, parent: VoiceResponse | Gather, key: str, **values: object) -> None:
        """Add a <Say> of one text to a response or a gather."""
        parent.say(i18n.text(self.locale, SECTION, key, **values), voice=self.voice, language=self.language)


def spelled(code: str) -> str:
    """A code spelled digit by digit, so text-to-speech never reads it as one number."""
    return ", ".join(code)


def _one_key(parent: VoiceResponse, action: str, on_silence: bool) -> Gather:
    """A Gather that ends on the caller's first key, # included (finishOnKey="", numDigits=1)."""
    return parent.gather(input="dtmf", action=action, method="POST", timeout=KEY_TIMEOUT, num_digits=1,
                         finish_on_key="", action_on_empty_result=on_silence or None)


def menu(locale: str, org: str, action: str, retry: bool = False) -> VoiceResponse:
    """The confirm menu: one key; # approves, 0 leads to the fraud step; silence posts too."""
    speaker = Speaker.of(locale)
    response = VoiceResponse()
    if retry:
        speaker.say(response, "invalid")
    speaker.say(_one_key(response, action, on_silence=True), "menu", org=org)
    return response


def fraud_step(locale: str, action: str) -> VoiceResponse:
    """After 0: one more key, # reports fraud (its prompt is nested, so an early # cuts it short)."""
    response = VoiceResponse()
    Speaker.of(locale).say(_one_key(response, action, on_silence=True), "fraud_confirm")
    return response


def read_code(locale: str, org: str, code: str, action: str, first: bool = True,
              offer_repeat: bool = True, voice: str | None = None) -> VoiceResponse:
    """The code read aloud digit by digit, twice; 1 hears it again (while offered); then goodbye."""
    speaker = Speaker.of(locale, voice)
    response = VoiceResponse()
    parent: VoiceResponse | Gather = response
    if offer_repeat:
        # Same rules as the menu: one key read from Digits; silence falls through to the goodbye.
        parent = _one_key(response, action, on_silence=False)
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
