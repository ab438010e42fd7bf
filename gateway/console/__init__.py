"""The operators' helpdesk console at /console (admin keys sign in)."""
from gateway.console.views import bp

__all__ = ["bp"]
