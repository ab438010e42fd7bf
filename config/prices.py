"""The price file: estimated cost of an SMS segment and a call minute by destination country."""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

DEFAULT_FILE = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """What one SMS segment and one call minute cost, in the budgets' currency."""

    sms: float
    call_minute: float


@dataclass(frozen=True)
class PriceList:
    """Prices by ISO alpha-2 country, with a default for every other country."""

    default: Price = Price(0.30, 0.40)
    countries: Mapping[str, Price] = field(default_factory=dict)
    currency: str = "USD"

    def for_country(self, country: str) -> Price:
        """The price of a destination country (the default when unlisted)."""
        return self.countries.get(country, self.default)


def _price(where: str, raw: object) -> Price:
    if not isinstance(raw, dict) or set(raw) != {"sms", "call_minute"}:
        raise ValueError(f"{where} must have exactly sms and call_minute")
    values = [raw["sms"], raw["call_minute"]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in values):
        raise ValueError(f"{where}: prices must be numbers from 0 to 100")
    return Price(float(values[0]), float(values[1]))


def load_prices(path: Path) -> PriceList:
    """Read and validate a price file; ValueError says what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    countries = data.get("countries", {})
    if not isinstance(countries, dict):
        raise ValueError("[countries] must be a table")
    for code in countries:
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{code!r} is not an ISO 3166 alpha-2 country code")
    return PriceList(
        default=_price("[default]", data.get("default")),
        countries={code: _price(f"countries.{code}", raw) for code, raw in countries.items()},
        currency=str(data.get("currency", "USD")),
    )
