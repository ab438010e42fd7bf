"""/v2 pieces without I/O: SIDs, form fields, the Twilio error body."""
from __future__ import annotations

import pytest

from gateway.models import Attempt, AttemptStatus, Channel, Status, Verification
from gateway.verify_v2 import forms, render
from gateway.verify_v2.errors import TwilioError
from gateway.verify_v2.flows import _voice


def _verification(hex_id: str) -> Verification:
    attempts = [Attempt(n, Channel.SMS, AttemptStatus.QUEUED, None, 0.0) for n in (1, 2, 3)]
    return Verification(id="vf_" + hex_id, status=Status.PENDING, reason=None, to="+48600100200", country="PL",
                        number_type="mobile", channel=Channel.SMS, channels=[Channel.SMS], position=0,
                        created_at=0.0, expires_at=1.0, max_attempts=5, failures=0, attempts=attempts)


@pytest.mark.parametrize("hex_id", ["0" * 32, "f" * 32, "0123456789abcdef" * 2])
def test_attempt_sids_lead_back_to_their_verification_and_attempt(hex_id: str) -> None:
    v = _verification(hex_id)
    sids = [render.vl_sid(v, n) for n in (1, 2, 3)]
    assert len(set(sids)) == 3 and all(forms.sid(s, "VL") for s in sids)
    for n, sid in enumerate(sids, 1):
        assert (v.id, n) in render.attempt_candidates(sid)
    assert render.ve_sid(v) == "VE" + hex_id and render.verification_id(render.ve_sid(v)) == v.id


def test_e164_and_codes_are_checked_as_twilio_does() -> None:
    assert forms.e164({"To": "+15017122661"}, "To") == "+15017122661"
    for bad in ("15017122661", "+0123456789", "+1 501 712", "+1501712266100000"):
        with pytest.raises(TwilioError) as info:
            forms.e164({"To": bad}, "To")
        assert (info.value.twilio_code, info.value.http_status) == (60200, 400) and "To" in info.value.message
    assert forms.code({"Code": "a1B2"}, "Code") == "a1B2"
    for bad in ("123", "12345678901", "12 34", "1234\n"):
        with pytest.raises(TwilioError):
            forms.code({"Code": bad}, "Code")


def test_booleans_integers_and_pages() -> None:
    assert forms.boolean({"X": "True"}, "X") is True and forms.boolean({}, "X") is None
    with pytest.raises(TwilioError):
        forms.boolean({"X": "yes"}, "X")
    assert forms.integer({"N": "7"}, "N", 4, 10) == 7
    for bad in ("-5", "²", "٧"):  # "²" passes str.isdigit but not int(): it was a 500
        with pytest.raises(TwilioError):
            forms.integer({"N": bad}, "N", 4, 10)
    assert forms.page({}) == (0, 50) and forms.page({"Page": "2", "PageSize": "20"}) == (2, 20)


def test_only_say_voices_are_taken_from_tts_name() -> None:
    assert _voice("Polly.Matthew") == "Polly.Matthew" and _voice("alice") == "alice"
    assert _voice("amazon-polly") is None and _voice("Polly.<x>") is None and _voice("alice\n") is None
    assert _voice(None) is None
