"""A Twilio-Verify-compatible API (/v2): the official twilio SDKs work with only verify.base_url changed."""
from gateway.verify_v2 import attempts  # noqa: F401  (its routes join bp)
from gateway.verify_v2.views import bp

__all__ = ["bp"]
