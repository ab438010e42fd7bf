"""Settings: the contract's defaults, file layering, and errors that name the variable."""
from __future__ import annotations

import pytest

from config import ConfigError, load_settings


def test_contract_defaults() -> None:
    s = load_settings({})
    assert (s.sms_code_ttl, s.sms_reply_timeout, s.code_length, s.max_check_attempts) == (300, 60, 6, 5)
    assert s.fallback_channels == ("call",) and s.allowed_countries == frozenset()
    assert s.public_base_url == "http://localhost:8000" and s.api_keys == ()
    assert s.twilio_api_base_url == "https://api.twilio.com" and not s.twilio_enabled
    assert (s.send_concurrency, s.send_backlog_max) == (32, 10000)


def test_values_are_parsed() -> None:
    s = load_settings({
        "PORT": "5000", "SMS_CODE_TTL": "180", "GATEWAY_API_KEYS": "a, b", "ALLOWED_COUNTRIES": "pl,US",
        "CALLER_ID_BY_COUNTRY": "PL=+48221234567,US=+12025550100", "FALLBACK_CHANNELS": "call,totp",
        "SMS_FROM": "MG" + "0" * 32,
    })
    assert s.public_base_url == "http://localhost:5000" and s.sms_code_ttl == 180
    assert s.api_keys == ("a", "b") and s.allowed_countries == {"PL", "US"}
    assert s.caller_id_by_country == {"PL": "+48221234567", "US": "+12025550100"}
    assert s.fallback_channels == ("call", "totp")


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"SMS_CODE_TTL": "soon"}, "SMS_CODE_TTL"),
        ({"CODE_LENGTH": "3"}, "CODE_LENGTH"),
        ({"CODE_LENGTH": "11"}, "CODE_LENGTH"),
        ({"MAX_CHECK_ATTEMPTS": "0"}, "MAX_CHECK_ATTEMPTS"),
        ({"SEND_CONCURRENCY": "0"}, "SEND_CONCURRENCY"),
        ({"SEND_CONCURRENCY": "many"}, "SEND_CONCURRENCY"),
        ({"SEND_BACKLOG_MAX": "-1"}, "SEND_BACKLOG_MAX"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"PUBLIC_BASE_URL": "ftp://x"}, "PUBLIC_BASE_URL"),
        ({"SMS_FROM": "12345"}, "SMS_FROM"),
        ({"VOICE_CALLER_ID": "0048221234567"}, "VOICE_CALLER_ID"),
        ({"CALLER_ID_BY_COUNTRY": "PL+48221234567"}, "CALLER_ID_BY_COUNTRY"),
        ({"CALLER_ID_BY_COUNTRY": "XX=+48221234567"}, "CALLER_ID_BY_COUNTRY"),
        ({"FALLBACK_CHANNELS": "call,fax"}, "FALLBACK_CHANNELS"),
        ({"ALLOWED_COUNTRIES": "Poland"}, "ALLOWED_COUNTRIES"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": "nope", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_ACCOUNT_SID"),
        ({"GATEWAY_SECRET_KEY": "short"}, "GATEWAY_SECRET_KEY"),
        ({"SMS_REPLY_CONFIRMATION": "maybe"}, "SMS_REPLY_CONFIRMATION"),
        ({"CONFIG_FILE": "/nonexistent.toml"}, "CONFIG_FILE"),
        ({"VERIFY_ACCOUNTS": "AC" + "1" * 32}, "VERIFY_ACCOUNTS"),
        ({"VERIFY_ACCOUNTS": "AC123:token"}, "VERIFY_ACCOUNTS"),
        ({"VERIFY_ACCOUNTS": "SK" + "2" * 32 + ":secret"}, "VERIFY_ACCOUNTS"),
        ({"VERIFY_ACCOUNTS": "SK" + "2" * 32 + ":secret@AC1"}, "VERIFY_ACCOUNTS"),
        # a final newline (as a secrets file often ends) is refused, not taken as part of a SID
        ({"SMS_FROM": "+48221234567\n"}, "SMS_FROM"),
        ({"SMS_FROM": "MG" + "0" * 32 + "\n"}, "SMS_FROM"),
        ({"VOICE_CALLER_ID": "+48221234567\n"}, "VOICE_CALLER_ID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32 + "\n", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_ACCOUNT_SID"),
        ({"VERIFY_ACCOUNTS": "AC" + "1" * 32 + "\n:token"}, "VERIFY_ACCOUNTS"),
        ({"VERIFY_ACCOUNTS": "SK" + "2" * 32 + "\n:secret@AC" + "1" * 32}, "VERIFY_ACCOUNTS"),
        # digits that str.isdigit takes but int() refuses, and a port or db redis-py would only
        # refuse at the first connection: refused at start, naming the variable
        ({"DELIVERY_RETRY_INTERVALS": "2,\u00b2"}, "DELIVERY_RETRY_INTERVALS"),
        ({"REDIS_URL": "redis://localhost:6\u00b379/0"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://localhost:99999/0"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://localhost:6379/\u00b2"}, "REDIS_URL"),
        ({"REDIS_URL": "rediss://u:p@[::1]:x/0"}, "REDIS_URL"),
        ({"RQ_REDIS_URL": "redis://localhost:6379/zero"}, "RQ_REDIS_URL"),
        ({"REDIS_URL": "redis+sentinel://h:2\u00b36379/mymaster"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+sentinel://h:26379/mymaster/\u00b2"}, "REDIS_URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable and variable in str(info.value)


def test_plain_redis_urls_with_a_port_and_db_still_pass() -> None:
    for url in ("redis://localhost:6379/0", "rediss://u:p@[::1]:6380/2", "redis://h", "unix:///tmp/r.sock?db=1"):
        assert load_settings({"REDIS_URL": url}).redis_url == url


def test_verify_accounts_take_account_tokens_and_api_keys() -> None:
    account, key = "AC" + "1" * 32, "SK" + "2" * 32
    creds = load_settings({"VERIFY_ACCOUNTS": f"{account}:tok:en, {key}:sec@ret@{account}"}).verify_accounts
    assert [(c.username, c.secret, c.account_sid) for c in creds] == [
        (account, "tok:en", account), (key, "sec@ret", account)]
    assert load_settings({}).verify_accounts == ()


def test_file_is_layered_under_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "gateway.toml"
    file.write_text('SMS_CODE_TTL = 180\nALLOWED_COUNTRIES = ["PL"]\nCODE_LENGTH = 8\n')
    s = load_settings({"CONFIG_FILE": str(file), "CODE_LENGTH": "4"})
    assert s.sms_code_ttl == 180 and s.allowed_countries == {"PL"} and s.code_length == 4
    assert load_settings({"CONFIG_FILE": "example.toml"}).sms_code_ttl == 180  # found in config/


def test_bad_setting_stops_the_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {**os.environ, "CODE_LENGTH": "99"}
    for module in ("gateway.worker", "gateway"):
        done = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "CODE_LENGTH" in done.stderr
