"""create_simulator(): the Flask (WSGI) app of the carrier simulator."""
from __future__ import annotations

from flask import Flask

from .config import SimulatorConfig
from .core import Simulator


def create_simulator(config: SimulatorConfig | None = None) -> Flask:
    """Build the simulator app (REST API, /_sim control API, /phone page); works at a root or under a prefix."""
    from . import control, page, rest

    config = config or SimulatorConfig.from_env()
    app = Flask("simulator", static_folder=None)
    app.json.sort_keys = False
    app.extensions["carrier_simulator"] = Simulator(config)
    app.register_blueprint(rest.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(page.bp)
    return app


def get_simulator(app: Flask) -> Simulator:
    """The Simulator object behind an app made by create_simulator (for in-process tests and shutdown)."""
    return app.extensions["carrier_simulator"]
