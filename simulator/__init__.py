"""Carrier simulator: a local stand-in for Twilio that speaks Twilio's wire protocol.

Use `create_simulator(SimulatorConfig(...))` to get a Flask app (mountable under a prefix), or run
`python -m simulator` (env: SIM_HOST, SIM_PORT, SIM_ACCOUNT_SID, SIM_AUTH_TOKEN, SIM_NUMBERS,
SIM_MESSAGING_SERVICES, SIM_SMS_URL, SIM_CALLBACK_DELAY_MS). The developer phone is at GET /phone,
the control API under /_sim/.
"""
from .app import create_simulator, get_simulator
from .config import SimulatorConfig
from .core import Simulator
from .models import Behaviour, Rule
from .openapi import validate_request

__all__ = ["Behaviour", "Rule", "Simulator", "SimulatorConfig", "create_simulator", "get_simulator",
           "validate_request"]
