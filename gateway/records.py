"""A verification's Redis hash, as stored, decoded into the domain's Verification."""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

from gateway.models import Attempt, AttemptStatus, Channel, Reason, Status, Verification

# Value -> member, read on every record decoded (a dict lookup costs less than Enum's call).
_CHANNELS = {c.value: c for c in Channel}
_ATTEMPT_STATUSES = {s.value: s for s in AttemptStatus}
_STATUSES = {s.value: s for s in Status}


@lru_cache(maxsize=256)
def _chain(raw: str) -> tuple[Channel, ...]:
    """A stored chain (JSON): a few distinct ones serve every record, so each is parsed once."""
    return tuple(_CHANNELS[c] for c in json.loads(raw))


def decode(raw: Mapping[bytes, bytes], verification_id: str = "") -> Verification:
    """A record as stored; its id from the record (previous releases stored it) or else the one it
    was read by (a script answers it beside the fields: prelude.lua reply())."""
    h = {k.decode(): v.decode() for k, v in raw.items()}
    get = h.get
    created = h["created"]
    attempts = []
    for i in range(1, int(get("n", "0")) + 1):
        p = f"a{i}:"
        err = get(p + "err")
        attempts.append(
            Attempt(
                number=i,
                channel=_CHANNELS[h[p + "ch"]],
                status=_ATTEMPT_STATUSES[h[p + "st"]],
                error_code=int(err) if err else None,
                started_at=float(get(p + "at") or created),  # a compact record's first: created
                sid=get(p + "sid") or None,
                ended_because=get(p + "why") or None,
            )
        )
    reason, deadline = get("reason"), get("deadline")
    length, ttl, dd = get("o_len"), get("o_ttl"), get("o_dd")
    return Verification(
        id=get("id") or verification_id,
        status=_STATUSES[h["status"]],
        reason=Reason(reason) if reason else None,
        to=h["to"],
        country=get("country", ""),
        number_type=get("ntype", "unknown"),
        channel=_CHANNELS[h["channel"]],
        channels=list(_chain(h["chain"])),
        position=int(get("pos", "0")),
        created_at=float(created),
        expires_at=float(h["expires"]),
        max_attempts=int(h["max"]),
        failures=int(get("fails", "0")),
        attempts=attempts,
        user_id=get("user_id") or None,
        locale=get("locale", "en"),
        ivr_mode=get("ivr_mode", "confirm"),
        client_ip=get("client_ip") or None,
        code_encrypted=get("enc", ""),
        deadline=float(deadline) if deadline else None,
        code_length=int(length) if length else None,
        code_ttl=int(ttl) if ttl else None,
        code_kept=get("keep", ""),
        org_name=get("o_org") or None,
        share_warning={"1": True, "0": False}.get(get("o_warn", "")),
        delivery_deadline=int(dd) if dd else None,
        voice=get("o_voice") or None,
        tags={k[2:]: v for k, v in h.items() if k.startswith("x_")},
    )
