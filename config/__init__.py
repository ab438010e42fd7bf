"""Settings: the one place that reads the environment, validated at start-up."""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers

from config.prices import DEFAULT_FILE as DEFAULT_PRICE_FILE
from config.prices import PriceList, load_prices
from config.redis_urls import SentinelTarget, UrlProblem, parse_redis_url, whole

CHANNELS = ("sms", "sms_reply", "call", "totp", "recovery_code")
# \A…\Z and ASCII digits: $ also matches before a final newline, \d also matches other scripts' digits.
E164 = re.compile(r"\A\+[1-9][0-9]{6,14}\Z")
MIN_ADMIN_KEY = 16
SERVICE_SID = re.compile(r"\AMG[0-9a-fA-F]{32}\Z")


ACCOUNT_SID = re.compile(r"\AAC[0-9a-f]{32}\Z")
KEY_SID = re.compile(r"\ASK[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class VerifyCredential:
    """One HTTP Basic login accepted on /v2: an account's SID and token, or an API key of an account."""

    username: str
    secret: str
    account_sid: str


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Every setting of the gateway, with the contract's defaults."""

    redis_url: str | None = None
    rq_redis_url: str | None = None
    redis_wait_replicas: int = 0
    redis_wait_ms: int = 100
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    verify_accounts: tuple[VerifyCredential, ...] = ()
    console_session_ttl: int = 8 * 3600
    port: int = 8000
    public_base_url: str = "http://localhost:8000"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_timeout: float = 10.0
    sms_from: str | None = None
    voice_caller_id: str | None = None
    caller_id_by_country: Mapping[str, str] = field(default_factory=dict)
    sms_code_ttl: int = 300
    sms_reply_timeout: int = 60
    call_ttl: int = 300
    totp_ttl: int = 300
    totp_enrolment_ttl: int = 600
    authenticator_notice_sms: bool = True
    code_length: int = 6
    max_check_attempts: int = 5
    fallback_channels: tuple[str, ...] = ("call",)
    allowed_countries: frozenset[str] = frozenset()
    auto_fixed_line_or_mobile: str = "sms"
    delivery_deadline: int = 30
    call_ring_timeout: int = 30
    call_menu_tries: int = 3
    call_hangup_grace: int = 3
    fraud_block_seconds: int = 86400
    organization_name: str = "Sign-in"
    sms_reply_confirmation: bool = True
    secret_key: str | None = None
    previous_secret_keys: tuple[str, ...] = ()
    retention: int = 3600
    audit_retention: int = 30 * 86400
    rate_limit_per_number: int = 5
    rate_limit_window: int = 600
    resend_interval: int = 30
    abuse: "AbuseSettings" = field(default_factory=lambda: AbuseSettings())
    delivery_retry_intervals: tuple[int, ...] = (2, 5, 15)
    send_concurrency: int = 32
    send_backlog_max: int = 10000
    previous_release_records: bool = False
    max_body_bytes: int = 16 * 1024
    server_name: str = field(default_factory=socket.gethostname)
    queue_name: str = "gateway"
    worker_class: str = "simple"
    log_level: str = "INFO"
    metrics_dir: str | None = None
    testing: bool = False

    @property
    def twilio_enabled(self) -> bool:
        """True when real Twilio credentials are configured."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def replace(self, **changes: object) -> "Settings":
        """A copy with some settings changed (tests and the dev entry point use it)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class AbuseSettings:
    """Limits, breakers and budgets against abuse and toll fraud (docs/abuse.md); 0 turns a limit off."""

    max_sends_per_verification: int = 5
    per_number_any_client: int = 10
    per_ip: int = 30
    per_user: int = 10
    per_country: int = 1000
    global_per_minute: int = 600
    checks_per_user: int = 10
    confirm_calls_per_hour: int = 3
    pumping_min_sends: int = 20
    pumping_country_min_sends: int = 100
    pumping_min_conversion: float = 0.2
    pumping_window: int = 3600
    pumping_cooloff: int = 3600
    converted_memory: int = 90 * 86400
    daily_budget: float = 100.0
    daily_budget_per_country: float = 25.0
    allow_voip: bool = True
    allow_unknown_type: bool = False
    prices: PriceList = field(default_factory=PriceList)


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value:g}")
    return value


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def _e164(name: str, value: str) -> str:
    if not E164.match(value):
        raise ConfigError(name, f"{value!r} is not an E.164 number like +48221234567")
    return value


def _country(name: str, value: str) -> str:
    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(name, f"{value!r} is not an ISO 3166 alpha-2 country code")
    return code


def _channels(name: str, values: list[str]) -> tuple[str, ...]:
    for value in values:
        if value not in CHANNELS:
            raise ConfigError(name, f"unknown channel {value!r}; use {', '.join(CHANNELS)}")
    return tuple(values)


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _intervals(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    items = _list(env, name)
    if name in env and not items:
        return ()
    if not items:
        return default
    if not all(whole(i) and int(i) <= 3600 for i in items) or len(items) > 10:
        raise ConfigError(name, "expected up to 10 comma-separated seconds (0-3600), like 2,5,15")
    return tuple(int(i) for i in items)


def _verify_accounts(env: Mapping[str, str], name: str) -> tuple[VerifyCredential, ...]:
    """AC…:token pairs and SK…:secret@AC… API keys, comma-separated."""
    found = []
    for item in _list(env, name):
        username, sep, rest = item.partition(":")
        secret, at, account = rest.rpartition("@") if KEY_SID.match(username) else (rest, "", username)
        if not sep or not secret or (KEY_SID.match(username) and not at):
            raise ConfigError(name, f"{username!r}: expected AC…:token or SK…:secret@AC…")
        if not (ACCOUNT_SID.match(username) or KEY_SID.match(username)) or not ACCOUNT_SID.match(account):
            raise ConfigError(name, f"{username!r}: SIDs are AC or SK followed by 32 lower-case hex digits")
        found.append(VerifyCredential(username, secret, account))
    return tuple(found)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _redis_url(env: Mapping[str, str], name: str) -> str | None:
    url = env.get(name) or None
    if url:
        redis_target(name, url)
    return url


def redis_target(name: str, url: str) -> SentinelTarget | None:
    """The Sentinel target of a Redis URL (None for a plain URL); ConfigError naming the variable."""
    try:
        return parse_redis_url(url)
    except UrlProblem as exc:
        raise ConfigError(name, str(exc)) from None


def _admin_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = tuple(_list(env, "GATEWAY_ADMIN_KEYS"))
    # An admin key can reset any user's methods: a guessable one is refused at start.
    if any(len(key) < MIN_ADMIN_KEY for key in keys):
        raise ConfigError("GATEWAY_ADMIN_KEYS", f"every admin key must be at least {MIN_ADMIN_KEY} characters")
    return keys


def _abuse(env: Mapping[str, str], per_number: int) -> AbuseSettings:
    """The abuse and toll-fraud settings (docs/abuse.md)."""
    price_file = Path(env.get("PRICE_FILE") or DEFAULT_PRICE_FILE)
    if not price_file.is_absolute() and not price_file.exists():
        price_file = Path(__file__).parent / price_file
    try:
        prices = load_prices(price_file)
    except ValueError as exc:
        raise ConfigError("PRICE_FILE", str(exc)) from None
    return AbuseSettings(
        max_sends_per_verification=_int(env, "MAX_SENDS_PER_VERIFICATION", 5, 1, 50),
        per_number_any_client=_int(env, "RATE_LIMIT_PER_NUMBER_ANY_CLIENT", 2 * per_number, 0, 1000000),
        per_ip=_int(env, "RATE_LIMIT_PER_IP", 30, 0, 1000000),
        per_user=_int(env, "RATE_LIMIT_PER_USER", 10, 0, 1000000),
        per_country=_int(env, "RATE_LIMIT_PER_COUNTRY", 1000, 0, 10000000),
        global_per_minute=_int(env, "GLOBAL_SENDS_PER_MINUTE", 600, 0, 10000000),
        checks_per_user=_int(env, "RATE_LIMIT_CHECKS_PER_USER", 10, 0, 1000000),
        confirm_calls_per_hour=_int(env, "CONFIRM_CALLS_PER_NUMBER_HOUR", 3, 0, 1000),
        pumping_min_sends=_int(env, "PUMPING_MIN_SENDS", 20, 0, 1000000),
        pumping_country_min_sends=_int(env, "PUMPING_COUNTRY_MIN_SENDS", 100, 0, 10000000),
        pumping_min_conversion=_float(env, "PUMPING_MIN_CONVERSION", 0.2, 0.0, 1.0),
        pumping_window=_int(env, "PUMPING_WINDOW", 3600, 60, 7 * 86400),
        pumping_cooloff=_int(env, "PUMPING_COOLOFF", 3600, 1, 30 * 86400),
        converted_memory=_int(env, "CONVERTED_NUMBER_MEMORY", 90 * 86400, 0, 3650 * 86400),
        daily_budget=_float(env, "DAILY_BUDGET", 100.0, 0.0, 1e9),
        daily_budget_per_country=_float(env, "DAILY_BUDGET_PER_COUNTRY", 25.0, 0.0, 1e9),
        allow_voip=_bool(env, "ALLOW_VOIP_NUMBERS", True),
        allow_unknown_type=_bool(env, "ALLOW_UNKNOWN_NUMBER_TYPE", False),
        prices=prices,
    )


def _layered(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment laid over the optional TOML file named by CONFIG_FILE."""
    merged: dict[str, str] = {}
    path = environ.get("CONFIG_FILE")
    if path:
        file = Path(path)
        if not file.is_absolute() and not file.exists():
            file = Path(__file__).parent / path
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("CONFIG_FILE", f"cannot read {path}: {exc}") from None
        for key, value in data.items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            merged[key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    merged.update(environ)
    return merged


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the bad variable."""
    env = _layered(os.environ if environ is None else environ)
    port = _int(env, "PORT", 8000, 1, 65535)
    redis_url = _redis_url(env, "REDIS_URL")
    rq_redis_url = _redis_url(env, "RQ_REDIS_URL")
    sms_from = env.get("SMS_FROM") or None
    if sms_from and not (E164.match(sms_from) or SERVICE_SID.match(sms_from)):
        raise ConfigError("SMS_FROM", "must be an E.164 number or a Messaging Service SID (MG…)")
    caller_ids: dict[str, str] = {}
    for pair in _list(env, "CALLER_ID_BY_COUNTRY"):
        country, sep, number = pair.partition("=")
        if not sep:
            raise ConfigError("CALLER_ID_BY_COUNTRY", f"{pair!r} is not COUNTRY=+NUMBER")
        caller_ids[_country("CALLER_ID_BY_COUNTRY", country.strip())] = _e164(
            "CALLER_ID_BY_COUNTRY", number.strip()
        )
    secret = env.get("GATEWAY_SECRET_KEY") or None
    if secret is not None and len(secret) < 32:
        raise ConfigError("GATEWAY_SECRET_KEY", "must be at least 32 characters")
    previous = tuple(_list(env, "GATEWAY_SECRET_KEY_PREVIOUS"))
    if any(len(key) < 32 for key in previous):
        raise ConfigError("GATEWAY_SECRET_KEY_PREVIOUS", "each key must be at least 32 characters")
    sid, token = env.get("TWILIO_ACCOUNT_SID") or None, env.get("TWILIO_AUTH_TOKEN") or None
    if bool(sid) != bool(token):
        missing = "TWILIO_AUTH_TOKEN" if sid else "TWILIO_ACCOUNT_SID"
        raise ConfigError(missing, "set both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or neither")
    if sid and not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise ConfigError("TWILIO_ACCOUNT_SID", "must be AC followed by 32 hex digits")
    auto = env.get("AUTO_FIXED_LINE_OR_MOBILE", "sms")
    if auto not in ("sms", "call"):
        raise ConfigError("AUTO_FIXED_LINE_OR_MOBILE", "must be sms or call")
    per_number = _int(env, "RATE_LIMIT_PER_NUMBER", 5, 1, 100000)
    worker_class = env.get("WORKER_CLASS", "simple")
    if worker_class not in ("simple", "fork"):
        raise ConfigError("WORKER_CLASS", "must be simple or fork")
    return Settings(
        redis_url=redis_url,
        rq_redis_url=rq_redis_url,
        redis_wait_replicas=_int(env, "REDIS_WAIT_REPLICAS", 0, 0, 100),
        redis_wait_ms=_int(env, "REDIS_WAIT_MS", 100, 1, 60000),
        api_keys=tuple(_list(env, "GATEWAY_API_KEYS")),
        admin_keys=_admin_keys(env),
        verify_accounts=_verify_accounts(env, "VERIFY_ACCOUNTS"),
        console_session_ttl=_int(env, "CONSOLE_SESSION_TTL", 8 * 3600, 300, 7 * 86400),
        port=port,
        public_base_url=_url("PUBLIC_BASE_URL", env.get("PUBLIC_BASE_URL") or f"http://localhost:{port}"),
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_api_base_url=_url("TWILIO_API_BASE_URL", env.get("TWILIO_API_BASE_URL") or "https://api.twilio.com"),
        twilio_timeout=float(_int(env, "TWILIO_TIMEOUT", 10, 1, 120)),
        sms_from=sms_from,
        voice_caller_id=_e164("VOICE_CALLER_ID", env["VOICE_CALLER_ID"]) if env.get("VOICE_CALLER_ID") else None,
        caller_id_by_country=caller_ids,
        sms_code_ttl=_int(env, "SMS_CODE_TTL", 300, 1, 86400),
        sms_reply_timeout=_int(env, "SMS_REPLY_TIMEOUT", 60, 1, 86400),
        call_ttl=_int(env, "CALL_TTL", 300, 1, 86400),
        totp_ttl=_int(env, "TOTP_TTL", 300, 1, 86400),
        totp_enrolment_ttl=_int(env, "TOTP_ENROLMENT_TTL", 600, 1, 86400),
        authenticator_notice_sms=_bool(env, "AUTHENTICATOR_NOTICE_SMS", True),
        code_length=_int(env, "CODE_LENGTH", 6, 4, 10),
        max_check_attempts=_int(env, "MAX_CHECK_ATTEMPTS", 5, 1, 100),
        fallback_channels=_channels("FALLBACK_CHANNELS", _list(env, "FALLBACK_CHANNELS") if "FALLBACK_CHANNELS" in env else ["call"]),
        allowed_countries=frozenset(_country("ALLOWED_COUNTRIES", c) for c in _list(env, "ALLOWED_COUNTRIES")),
        auto_fixed_line_or_mobile=auto,
        delivery_deadline=_int(env, "DELIVERY_DEADLINE", 30, 1, 3600),
        call_ring_timeout=_int(env, "CALL_RING_TIMEOUT", 30, 5, 600),
        call_menu_tries=_int(env, "CALL_MENU_TRIES", 3, 1, 10),
        call_hangup_grace=_int(env, "CALL_HANGUP_GRACE", 3, 0, 60),
        fraud_block_seconds=_int(env, "FRAUD_BLOCK_SECONDS", 86400, 0, 365 * 86400),
        organization_name=env.get("ORGANIZATION_NAME", "Sign-in")[:60],
        sms_reply_confirmation=_bool(env, "SMS_REPLY_CONFIRMATION", True),
        secret_key=secret,
        previous_secret_keys=previous,
        retention=_int(env, "VERIFICATION_RETENTION", 3600, 60, 30 * 86400),
        audit_retention=_int(env, "AUDIT_RETENTION", 30 * 86400, 60, 3650 * 86400),
        rate_limit_per_number=per_number,
        rate_limit_window=_int(env, "RATE_LIMIT_WINDOW", 600, 1, 86400),
        resend_interval=_int(env, "RESEND_INTERVAL", 30, 0, 3600),
        abuse=_abuse(env, per_number),
        delivery_retry_intervals=_intervals(env, "DELIVERY_RETRY_INTERVALS", (2, 5, 15)),
        send_concurrency=_int(env, "SEND_CONCURRENCY", 32, 1, 512),
        send_backlog_max=_int(env, "SEND_BACKLOG_MAX", 10000, 0, 10_000_000),
        previous_release_records=_bool(env, "PREVIOUS_RELEASE_RECORDS", False),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 16 * 1024, 1024, 1024 * 1024),
        server_name=env.get("GATEWAY_SERVER_NAME") or socket.gethostname(),
        queue_name=env.get("QUEUE_NAME", "gateway"),
        worker_class=worker_class,
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
