"""Scoped API keys: verify keys for applications, admin keys for operators."""
from __future__ import annotations

import pytest
from flask import Blueprint

from config import ConfigError, load_settings
from gateway import create_app
from gateway.auth import Scope, guard, identify, key_id, requires
from tests.conftest import ADMIN_KEY, API_KEY, gateway_env

MOBILE = "+48600100200"


def test_a_verify_key_is_forbidden_on_admin_routes_and_changes_nothing(client, redis_db) -> None:
    redis_db.hset("gw:user:anna", "app", "x")
    r = client.delete("/v1/users/anna")
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    assert redis_db.exists("gw:user:anna")
    assert not redis_db.exists("gw:actions")


def test_an_admin_key_resets_and_the_action_names_its_key_id_not_the_key(app, admin, redis_db) -> None:
    redis_db.hset("gw:user:anna", "app", "x")
    assert admin.delete("/v1/users/anna").status_code == 204
    assert not redis_db.exists("gw:user:anna")
    [(_, fields)] = redis_db.xrange("gw:actions")
    recorded = {k.decode(): v.decode() for k, v in fields.items()}
    svc = app.extensions["gateway"]
    assert recorded["action"] == "reset_user" and recorded["target"] == "anna"
    assert recorded["key_id"] == key_id(ADMIN_KEY, svc.key("key-id")) and recorded["key_id"].startswith("key_")
    assert ADMIN_KEY not in str(redis_db.xrange("gw:actions"))


def test_an_admin_key_also_has_the_verify_scope(admin) -> None:
    r = admin.post("/v1/verifications", json={"to": MOBILE, "channel": "sms"})
    assert r.status_code == 201


@pytest.mark.parametrize("header", ["", "Bearer wrong-key-0123456789", f"Basic {ADMIN_KEY}", f"Bearer {ADMIN_KEY}x"])
def test_unknown_keys_are_unauthorized_on_admin_routes(app, header) -> None:
    r = app.test_client().delete("/v1/users/anna", headers={"Authorization": header})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_without_admin_keys_no_key_reaches_admin_routes(settings) -> None:
    c = create_app(settings.replace(admin_keys=())).test_client()
    for key in (API_KEY, ADMIN_KEY):
        assert c.delete("/v1/users/anna", headers={"Authorization": f"Bearer {key}"}).status_code in (401, 403)


def test_a_route_that_declares_no_scope_needs_admin(settings) -> None:
    app = create_app(settings)
    bp = Blueprint("probe", __name__, url_prefix="/probe")
    guard(bp)
    bp.add_url_rule("/undeclared", "undeclared", lambda: "ok")
    bp.add_url_rule("/open", "open", requires(Scope.VERIFY)(lambda: "ok"))
    app.register_blueprint(bp)
    c = app.test_client()
    verify, admin = ({"Authorization": f"Bearer {k}"} for k in (API_KEY, ADMIN_KEY))
    assert c.get("/probe/undeclared", headers=verify).status_code == 403
    assert c.get("/probe/undeclared", headers=admin).status_code == 200
    assert c.get("/probe/open", headers=verify).status_code == 200


def test_identify_compares_every_key_and_names_scopes() -> None:
    secret = b"k" * 32
    assert identify("a" * 20, ("a" * 20,), ("b" * 20,), secret).scopes == {Scope.VERIFY}  # type: ignore[union-attr]
    assert identify("b" * 20, ("a" * 20,), ("b" * 20,), secret).scopes == {Scope.VERIFY, Scope.ADMIN}  # type: ignore[union-attr]
    assert identify("", ("",), (), secret) is None
    assert identify("c" * 20, ("a" * 20,), ("b" * 20,), secret) is None
    assert key_id("b" * 20, secret) == key_id("b" * 20, secret) != key_id("b" * 20, b"o" * 32)


def test_short_admin_keys_are_refused_at_start() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(gateway_env(9, GATEWAY_ADMIN_KEYS="short"))
    assert err.value.variable == "GATEWAY_ADMIN_KEYS"
    assert load_settings(gateway_env(9, GATEWAY_ADMIN_KEYS=f"{ADMIN_KEY}, {ADMIN_KEY}2")).admin_keys == (
        ADMIN_KEY, ADMIN_KEY + "2")
