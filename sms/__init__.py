"""The SMS channels: one-way codes and two-way replies."""
from sms.webhooks import bp

__all__ = ["bp"]
