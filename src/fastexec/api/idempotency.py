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

Two stores: ``IdempotencyStore`` keeps everything in this process (an engine
without a journal: the keys end with the process), ``JournaledIdempotencyStore``
keeps the outcomes in the journal next to the orders (``JournaledEngine``, what
``fastexec serve`` runs), so a retry after a restart or a crash is answered as
before it; how, and why that way, is in ``fastexec.journal.keys``. Both remember
the newest 10,000 keys for 24 h after their first use (``FASTEXEC_IDEMPOTENCY_KEYS``,
``FASTEXEC_IDEMPOTENCY_TTL_S`` for the journaled one). Requests with the same key
running at once are refused with 409 (the reservation is in memory in both).
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


class IdempotencyResultLost(ConflictError):
    """The key placed an order, the process stopped before the outcome was journaled
    and the engine no longer holds the order (it finished before the restart)."""

    default_code = "IDEMPOTENCY_KEY_RESULT_LOST"


def _reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused("Idempotency-Key was already used with a different request body", field="Idempotency-Key")


def _in_use() -> ConflictError:
    return ConflictError(
        "a request with this Idempotency-Key is still being processed; retry shortly",
        code="IDEMPOTENCY_KEY_IN_USE",
        field="Idempotency-Key",
    )


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
    durable = False

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
                    raise _reused()
                raise _in_use()
            stored_digest, stored_at, status, body = entry  # type: ignore[misc]
            if time.monotonic() - stored_at <= self.ttl:
                if stored_digest != digest:
                    raise _reused()
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


class JournaledIdempotencyStore:
    """Outcomes in the journal (``fastexec.journal.keys.IdempotencyKeys``), reservations here.

    The API calls ``begin`` as ``IdempotencyStore.begin``; on None it journals the key
    (``keys.begin``) and submits through ``JournaledEngine.submit_recorded``, whose
    callback journals the outcome (``keys.result`` / ``keys.release``); ``done`` drops
    the reservation.
    """

    durable = True

    def __init__(self, keys, engine) -> None:
        self.keys = keys
        self.engine = engine
        self._inflight: dict[tuple[str, str], bytes] = {}

    def __len__(self) -> int:
        return len(self.keys) + len(self._inflight)

    @property
    def max_entries(self) -> int:
        return self.keys.max_entries

    digest = staticmethod(IdempotencyStore.digest)

    def begin(self, principal: str, key: str, digest: bytes) -> Optional[tuple[int, bytes]]:
        """A (status, body) to replay, or None after reserving the key (see ``IdempotencyStore.begin``)."""
        k = (principal, key)
        running = self._inflight.get(k)
        if running is not None:
            if running != digest:
                raise _reused()
            raise _in_use()
        entry = self.keys.get(principal, key)
        if entry is not None and (entry.status is not None or entry.order_id is not None):
            if entry.digest != digest.hex():
                raise _reused()
            if entry.status is not None:
                return entry.status, entry.body.encode()
            return self._current(entry)
        # never seen, forgotten, or a key whose request placed nothing and never answered
        # (the process stopped first): a new request
        self._inflight[k] = digest
        return None

    def _current(self, entry) -> tuple[int, bytes]:
        """A key whose order was journaled but whose outcome was not (the process stopped
        in between, before answering): the order as the engine holds it now."""
        from fastexec.engine.wire import order_json

        try:
            view = self.engine.get_order(entry.order_id)
        except FastexecError:
            view = None
        if view is None or view.order_id != entry.order_id:
            raise IdempotencyResultLost(
                f"the first request with this Idempotency-Key placed order {entry.order_id}; the service stopped "
                "before its result was recorded and the order has finished since. It is not placed again.",
                field="Idempotency-Key",
                detail=f"order_id={entry.order_id} client_order_id={entry.client_order_id}",
            )
        return 201, order_json(view)

    def done(self, principal: str, key: str) -> None:
        self._inflight.pop((principal, key), None)
