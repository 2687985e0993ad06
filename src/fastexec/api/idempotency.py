"""``Idempotency-Key`` support for order submission.

A client that lost the response to a POST cannot know whether its order
exists. Retrying with the same key returns the first outcome instead of
placing a second order. Entries are keyed per principal (two tokens cannot
see each other's results), remember a digest of the body (a different body
under the same key is a client bug: 422, never a silent replay of the wrong
order) and are bounded in number and age so the store cannot grow without
limit.

Only outcomes that reflect a decision are stored: a created order, or a
refusal by the engine (risk denial, kill switch, broker reject). Malformed
requests (400) and transient failures (5xx) are not, so fixing the body or
retrying later with the same key works.
"""
from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from typing import Optional

from fastexec.errors import ConflictError, FastexecError, ValidationError

MAX_KEY_LENGTH = 255
# printable ASCII, not starting with a space (the same pattern the spec publishes)
KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"
_KEY_RE = re.compile(KEY_PATTERN)


class IdempotencyKeyReused(FastexecError):
    http_status = 422
    default_code = "IDEMPOTENCY_KEY_REUSED"


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or _KEY_RE.fullmatch(key) is None:
        raise ValidationError(
            f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} printable ASCII characters",
            code="INVALID_IDEMPOTENCY_KEY",
            field="Idempotency-Key",
        )
    return key


class _InFlight:
    __slots__ = ("digest",)

    def __init__(self, digest: bytes) -> None:
        self.digest = digest


class IdempotencyStore:
    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 24 * 3600) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        # key -> (digest, stored_at, status, body) | _InFlight
        self._entries: "OrderedDict[tuple[str, str], object]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def digest(body: bytes) -> bytes:
        return hashlib.sha256(body).digest()

    def begin(self, principal: str, key: str, digest: bytes) -> Optional[tuple[int, bytes]]:
        """A stored (status, body) to replay, or None after reserving the key.

        Raises 409 while the first request with this key is still running and
        422 when the key was used with a different body.
        """
        k = (principal, key)
        entry = self._entries.get(k)
        if entry is not None:
            if isinstance(entry, _InFlight):
                if entry.digest != digest:
                    raise IdempotencyKeyReused("Idempotency-Key was already used with a different request body", field="Idempotency-Key")
                raise ConflictError(
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    code="IDEMPOTENCY_KEY_IN_USE",
                    field="Idempotency-Key",
                )
            stored_digest, stored_at, status, body = entry  # type: ignore[misc]
            if time.monotonic() - stored_at <= self.ttl:
                if stored_digest != digest:
                    raise IdempotencyKeyReused("Idempotency-Key was already used with a different request body", field="Idempotency-Key")
                self._entries.move_to_end(k)
                return status, body
            del self._entries[k]
        self._entries[k] = _InFlight(digest)
        self._evict()
        return None

    def finish(self, principal: str, key: str, digest: bytes, status: int, body: bytes) -> None:
        self._entries[(principal, key)] = (digest, time.monotonic(), status, body)
        self._entries.move_to_end((principal, key))
        self._evict()

    def abandon(self, principal: str, key: str) -> None:
        entry = self._entries.get((principal, key))
        if isinstance(entry, _InFlight):
            del self._entries[(principal, key)]

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self.max_entries:
            k, v = next(iter(entries.items()))
            if isinstance(v, _InFlight):
                # never drop a reservation mid-flight; move it behind the finished ones
                entries.move_to_end(k)
                if all(isinstance(x, _InFlight) for x in entries.values()):
                    break
                continue
            del entries[k]
