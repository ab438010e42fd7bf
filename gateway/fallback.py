"""The fallback policy: which channels a verification tries, in which order. Pure."""
from __future__ import annotations

from dataclasses import dataclass

from gateway import phone
from gateway.models import Channel

SMS_CHANNELS = frozenset({Channel.SMS, Channel.SMS_REPLY})
NOTHING_SENT = frozenset({Channel.TOTP, Channel.RECOVERY_CODE})  # the user already holds the code
_SMS_CAPABLE = frozenset(t.value for t in phone.SMS_CAPABLE)


@dataclass(frozen=True)
class Reach:
    """What is known of the number and the user that decides which channels can work."""

    number_type: str
    opted_out: bool
    has_totp: bool
    has_recovery: bool = False

    def can(self, channel: Channel) -> bool:
        """Whether the channel can reach the user at all."""
        if channel in SMS_CHANNELS:
            return not self.opted_out and self.number_type in _SMS_CAPABLE
        if channel is Channel.TOTP:
            return self.has_totp
        if channel is Channel.RECOVERY_CODE:
            return self.has_recovery
        return True


def plan_chain(
    requested: str, rest: tuple[Channel, ...], number: phone.PhoneNumber, auto_choice: str, reach: Reach
) -> list[Channel]:
    """The channels to try in order, skipping those that cannot reach this number."""
    if requested == "auto":
        if number.type is phone.NumberType.FIXED_LINE_OR_MOBILE:
            first = Channel(auto_choice)
        else:
            first = Channel.SMS if number.sms_capable else Channel.CALL
        if not reach.can(first):
            first = Channel.CALL
    else:
        first = Channel(requested)
        # Explicitly asked for SMS to a number that said STOP: refuse rather than surprise.
        if first in SMS_CHANNELS and reach.opted_out:
            return []
    # A recovery code is the last resort: each one used is one of ten gone, so in a fallback
    # chain every other channel comes first.
    rest = tuple(sorted(rest, key=lambda channel: channel is Channel.RECOVERY_CODE))
    chain: list[Channel] = []
    for channel in (first, *rest):
        if channel not in chain and reach.can(channel):
            chain.append(channel)
    return chain


def next_channel(
    chain: list[Channel], position: int, reach: Reach, forced: Channel | None = None
) -> tuple[int, Channel] | None:
    """The next reachable channel after the current position (or the forced one), if any."""
    if forced is not None:
        if not reach.can(forced):
            return None
        return (chain.index(forced) if forced in chain else position), forced
    for index in range(position + 1, len(chain)):
        if reach.can(chain[index]):
            return index, chain[index]
    return None
