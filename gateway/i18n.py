"""Texts per locale: gateway/locales/<locale>/<section>.toml (sms, voice, ...)."""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path

_DIR = Path(__file__).with_name("locales")
DEFAULT = "en"
LOCALES = tuple(sorted(p.name for p in _DIR.iterdir() if p.is_dir()))  # a locale is a folder


@functools.cache
def _section(locale: str, section: str) -> dict[str, str]:
    path = _DIR / locale / f"{section}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def setting(locale: str, section: str, key: str) -> str:
    """A raw value of a locale (a text template, a voice name); English when missing."""
    return _section(locale, section).get(key) or _section(DEFAULT, section)[key]


def text(locale: str, section: str, key: str, **values: object) -> str:
    """A text of a locale with its placeholders filled."""
    return setting(locale, section, key).format(**values)
