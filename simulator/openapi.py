"""Check recorded REST requests against Twilio's OpenAPI description of API 2010-04-01."""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_LOCK = threading.Lock()
_CACHE: dict[str, "_Spec"] = {}
_BODY_METHODS = ("POST", "PUT", "PATCH")


def spec_path() -> Path:
    """Where the spec lives: $TWILIO_OPENAPI_SPEC, else <repo root>/../shared/reference/twilio_api_v2010.json."""
    env = os.environ.get("TWILIO_OPENAPI_SPEC")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parent.parent
    return repo_root.parent / "shared" / "reference" / "twilio_api_v2010.json"


@dataclass
class _Template:
    """One path template of the spec compiled to a regex."""

    template: str
    regex: re.Pattern[str]
    names: list[str]
    item: dict[str, Any]


class _Spec:
    """A loaded spec with compiled path templates and $ref resolution."""

    def __init__(self, document: dict[str, Any]) -> None:
        """Compile every path template."""
        self.document = document
        self.templates: list[_Template] = []
        for template, item in document.get("paths", {}).items():
            names = re.findall(r"\{([^}]+)\}", template)
            pattern = re.escape(template)
            for name in names:
                pattern = pattern.replace(re.escape("{" + name + "}"), "([^/]+)")
            self.templates.append(_Template(template, re.compile(r"\A" + pattern + r"\Z"), names, item))
        self.templates.sort(key=lambda t: len(t.names))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow local $refs (#/components/...)."""
        seen = 0
        while "$ref" in schema and seen < 20:
            node: Any = self.document
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema, seen = node, seen + 1
        return schema

    def match(self, path: str) -> tuple[_Template, dict[str, str]] | None:
        """The most specific template matching a path, with the path parameter values."""
        for template in self.templates:
            found = template.regex.match(path)
            if found:
                return template, dict(zip(template.names, found.groups()))
        return None


def _ecma(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern for Python's re: there a final $ ends the text, while
    Python's $ also matches before a final newline (every pattern in Twilio's file ends in $)."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern


def load_spec(path: Path | None = None) -> _Spec:
    """Load (once, cached per file) and compile the OpenAPI spec."""
    target = str(path or spec_path())
    with _LOCK:
        if target not in _CACHE:
            with open(target, encoding="utf-8") as handle:
                _CACHE[target] = _Spec(json.load(handle))
        return _CACHE[target]


def _check_value(spec: _Spec, name: str, value: str, schema: dict[str, Any]) -> list[str]:
    """Problems with one string value against a (resolved) parameter schema."""
    schema = spec.resolve(schema)
    problems: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{name}: {value!r} is not one of {schema['enum']}")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        problems.append(f"{name}: {value!r} is not an integer")
    elif kind == "number":
        try:
            float(value)
        except ValueError:
            problems.append(f"{name}: {value!r} is not a number")
    elif kind == "boolean" and value not in ("true", "false"):
        problems.append(f"{name}: {value!r} is not a boolean (true/false)")
    ignore_format = bool(schema.get("x-twilio", {}).get("ignoreFormat"))
    fmt = schema.get("format")
    if fmt == "uri" and not ignore_format:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"{name}: {value!r} is not an absolute http(s) URI")
    elif fmt == "date-time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{name}: {value!r} is not an ISO 8601 date-time")
    if "pattern" in schema and not re.search(_ecma(schema["pattern"]), value):
        problems.append(f"{name}: {value!r} does not match {schema['pattern']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{name}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{name}: longer than {schema['maxLength']}")
    return problems


def _check_pairs(spec: _Spec, pairs: list[tuple[str, str]], properties: dict[str, Any],
                 required: list[str], where: str) -> list[str]:
    """Names known, required present, repetition only for arrays, each value well-typed."""
    problems: list[str] = []
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        if name not in properties:
            problems.append(f"unknown {where} parameter {name!r}")
            continue
        schema = spec.resolve(properties[name])
        if schema.get("type") == "array":
            item_schema = schema.get("items", {})
            for value in values:
                problems += _check_value(spec, name, value, item_schema)
            continue
        if len(values) > 1:
            problems.append(f"{name}: given {len(values)} times but is not a list")
        for value in values:
            problems += _check_value(spec, name, value, schema)
    for name in required:
        if name not in grouped:
            problems.append(f"missing required {where} parameter {name!r}")
    return problems


def validate_request(method: str, path: str, form_pairs: list[tuple[str, str]] | list[list[str]],
                     spec_file: Path | None = None) -> list[str]:
    """Problems with a request against Twilio's OpenAPI (empty list = valid)."""
    spec = load_spec(spec_file)
    method = method.upper()
    path = path.split("?", 1)[0]
    if "/2010-04-01/" in path and not path.startswith("/2010-04-01/"):
        path = path[path.index("/2010-04-01/"):]
    pairs = [(str(p[0]), str(p[1])) for p in form_pairs]
    found = spec.match(path)
    if found is None:
        return [f"no path template in the OpenAPI spec matches {path}"]
    template, path_values = found
    operation = template.item.get(method.lower())
    if operation is None:
        return [f"{method} is not defined for {template.template}"]
    problems: list[str] = []
    declared = {p["name"]: p for p in operation.get("parameters", []) + template.item.get("parameters", [])}
    for name, value in path_values.items():
        schema = declared.get(name, {}).get("schema", {})
        problems += _check_value(spec, name, value, schema)
    if method in _BODY_METHODS:
        body = operation.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded")
        if body is None:
            return problems + ([f"{template.template} takes no form parameters"] if pairs else [])
        schema = spec.resolve(body.get("schema", {}))
        return problems + _check_pairs(spec, pairs, schema.get("properties", {}), schema.get("required", []),
                                       "form")
    query = {name: p.get("schema", {}) for name, p in declared.items() if p.get("in") == "query"}
    required = [name for name, p in declared.items() if p.get("in") == "query" and p.get("required")]
    return problems + _check_pairs(spec, pairs, query, required, "query")
