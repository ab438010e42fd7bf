"""The IVR flows' TwiML, parsed as XML: prompts, Gather attributes, voices, the code read-out."""
from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway import i18n
from ivr import twiml as flows

ACTION = "https://gw.example/webhooks/twilio/voice/vf_1/1/gather?round=1"
LOCALES = Path(i18n.__file__).with_name("locales")


def parse(response: object) -> ET.Element:
    """The <Response> root of a TwiML document."""
    root = ET.fromstring(str(response).encode())
    assert root.tag == "Response"
    return root


def says(element: ET.Element) -> list[ET.Element]:
    """Every <Say> below an element, in document order."""
    return list(element.iter("Say"))


def test_menu_greets_with_the_organisation_and_gathers_every_outcome() -> None:
    root = parse(flows.menu("en", "Acme Bank", ACTION))
    assert [child.tag for child in root] == ["Gather"]
    gather = root[0]
    assert gather.get("action") == ACTION and gather.get("method") == "POST"
    # '#' must arrive as a digit (a finish key before any digit is no input) and end the Gather at
    # once (one key); silence must post too.
    assert gather.get("finishOnKey") == "" and gather.get("actionOnEmptyResult") == "true"
    assert gather.get("numDigits") == "1" and gather.get("input") == "dtmf"
    assert int(gather.get("timeout", "0")) >= 3
    (prompt,) = says(gather)
    assert "Acme Bank" in prompt.text and "pound key" in prompt.text and "zero" in prompt.text
    assert prompt.get("voice") == "Polly.Joanna" and prompt.get("language") == "en-US"


def test_menu_after_a_wrong_key_says_so_before_repeating() -> None:
    root = parse(flows.menu("en", "Acme", ACTION, retry=True))
    assert [child.tag for child in root] == ["Say", "Gather"]
    assert root[0].text == i18n.text("en", "voice", "invalid")


def test_polish_menu_uses_the_polish_voice_and_language() -> None:
    root = parse(flows.menu("pl", "Acme", ACTION))
    (prompt,) = says(root)
    assert prompt.get("voice") == "Polly.Ewa" and prompt.get("language") == "pl-PL"
    assert "krzyżyk" in prompt.text and "Acme" in prompt.text


def test_code_is_read_digit_by_digit_twice_with_an_option_to_repeat() -> None:
    root = parse(flows.read_code("en", "Acme", "402917", ACTION))
    assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
    gather = root[0]
    assert gather.get("numDigits") == "1" and gather.get("finishOnKey") == "" and gather.get("action") == ACTION
    assert gather.get("actionOnEmptyResult") is None  # silence falls through to the goodbye
    texts = [say.text or "" for say in says(gather)]
    spelled = "4, 0, 2, 9, 1, 7"
    assert sum(spelled in text for text in texts) == 2
    assert "Acme" in texts[0] and "press 1" in texts[-1]
    assert gather.find("Pause") is not None
    assert root[1].text == i18n.text("en", "voice", "goodbye")


def test_repeated_code_in_polish_skips_the_greeting() -> None:
    root = parse(flows.read_code("pl", "Acme", "1234", ACTION, first=False))
    texts = [say.text or "" for say in says(root)]
    assert all(say.get("language") == "pl-PL" and say.get("voice") == "Polly.Ewa" for say in says(root))
    assert sum("1, 2, 3, 4" in text for text in texts) == 2 and not any("Acme" in text for text in texts)


@pytest.mark.parametrize("key", ["approved", "fraud", "no_input", "ended", "goodbye"])
def test_farewells_say_one_sentence_and_hang_up(key: str) -> None:
    root = parse(flows.farewell("pl", key))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == i18n.text("pl", "voice", key) and root[0].get("language") == "pl-PL"


def test_a_machine_hears_nothing() -> None:
    root = parse(flows.hang_up())
    assert [child.tag for child in root] == ["Hangup"] and not says(root)


def test_the_fraud_step_asks_for_one_key_with_its_prompt_nested() -> None:
    root = parse(flows.fraud_step("pl", ACTION))
    assert [child.tag for child in root] == ["Gather"]
    gather = root[0]
    assert (gather.get("numDigits"), gather.get("finishOnKey"), gather.get("actionOnEmptyResult")) == ("1", "", "true")
    (prompt,) = says(gather)
    assert prompt.text == i18n.text("pl", "voice", "fraud_confirm") and "krzyżyk" in prompt.text


M, F = flows.Step.MENU, flows.Step.FRAUD


@pytest.mark.parametrize(
    "step, digits, expected",
    [
        (M, "#", flows.Choice.APPROVE),
        (M, "0", flows.Choice.FRAUD_STARTED),
        (F, "#", flows.Choice.FRAUD),  # 0 then #
        (M, "", flows.Choice.SILENCE),
        (F, "", flows.Choice.SILENCE),
        (M, "5", flows.Choice.OTHER),
        (M, "*", flows.Choice.OTHER),
        (F, "0", flows.Choice.OTHER),
        (F, "1", flows.Choice.OTHER),
        (M, "0#", flows.Choice.BAD),  # a one-key Gather cannot post two keys
        (M, "##", flows.Choice.BAD),
        (F, "12", flows.Choice.BAD),
        (M, "a", flows.Choice.BAD),
    ],
)
def test_menu_keys(step: flows.Step, digits: str, expected: flows.Choice) -> None:
    assert flows.choice(step, digits) is expected


def test_every_locale_has_every_voice_text() -> None:
    english = tomllib.loads((LOCALES / "en" / "voice.toml").read_text(encoding="utf-8"))
    for folder in LOCALES.iterdir():
        texts = tomllib.loads((folder / "voice.toml").read_text(encoding="utf-8"))
        assert set(texts) == set(english), folder.name
        for key, value in texts.items():
            value.format(org="Acme", digits="1, 2")  # no unknown placeholders
