"""Texts per locale, one TOML file each in gateway/locales/."""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path

_DIR = Path(__file__).with_name("locales")
DEFAULT = "en"


@functools.cache
def _catalog(locale: str) -> dict[str, dict[str, str]]:
    path = _DIR / f"{locale}.toml"
    if not path.exists():
        path = _DIR / f"{DEFAULT}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def text(locale: str, section: str, key: str, **values: object) -> str:
    """A text of a locale with its placeholders filled; English when missing."""
    template = _catalog(locale).get(section, {}).get(key) or _catalog(DEFAULT)[section][key]
    return template.format(**values)


def setting(locale: str, section: str, key: str) -> str:
    """A raw value of a locale (such as the voice's language or voice name)."""
    return _catalog(locale).get(section, {}).get(key) or _catalog(DEFAULT)[section][key]


def available() -> list[str]:
    """The locales that have a file."""
    return sorted(p.stem for p in _DIR.glob("*.toml"))
