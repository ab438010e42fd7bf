"""The voice channel: IVR calls."""
from ivr.webhooks import bp

__all__ = ["bp"]
