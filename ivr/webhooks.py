"""Voice webhooks from Twilio (placeholder until the IVR flows land)."""
from flask import Blueprint

bp = Blueprint("ivr", __name__, url_prefix="/webhooks/twilio/voice")
