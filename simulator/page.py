"""The developer phone page (GET /phone) and its static JS/CSS, prefix-safe via request.script_root."""
from __future__ import annotations

import html
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, request

bp = Blueprint("sim_page", __name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"phone.js": "text/javascript", "phone.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _read(name: str) -> str:
    """Read a file shipped in simulator/static."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")


@bp.get("/")
def index() -> Response:
    """The simulator root sends people to the phone page."""
    return redirect(request.script_root + "/phone")


@bp.get("/phone")
def phone() -> Response:
    """The developer phone: HTML shell; phone.js polls the control API below the same root."""
    base = html.escape(request.script_root, quote=True)
    page = _read("phone.html").replace("{{BASE}}", base)
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/_sim/static/<name>")
def static_file(name: str) -> Response:
    """phone.js / phone.css (nothing else is served)."""
    if name not in STATIC_FILES:
        abort(404)
    response = Response(_read(name), mimetype=STATIC_FILES[name])
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
