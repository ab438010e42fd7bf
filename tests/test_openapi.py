"""docs/openapi.yaml is valid OpenAPI 3.1 and matches the app's routes."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def _spec() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(SPEC.read_text())


def test_openapi_is_valid() -> None:
    validate(_spec())


def test_routes_match_the_openapi_file(app) -> None:  # type: ignore[no-untyped-def]
    documented = {
        (path, method.upper())
        for path, item in _spec()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/dev"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented
