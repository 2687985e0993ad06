"""Idempotency keys in the journal: a retried submit is answered after a restart or a crash too.

The REST layer (``fastexec.api.idempotency``) remembers, per ``Idempotency-Key``, the
first outcome of a submit. Kept only in memory, a key was lost in a restart, and the
retry it exists for (the client never saw the answer because the process died) placed
a second order. This module keeps the keys in the journal, next to the orders.

Records (ignored by ``JournalState``, which changes nothing for types it does not know):

- ``idempotency.key``  principal, key, digest (sha256 of the body, hex), account_id,
  request_id, client_order_id (the body's, or None): appended by the API immediately
  before it calls the engine's submit;
- ``idempotency.result``  principal, key, digest, status, body (the response, JSON
  text), order_id (None for a refusal): appended as soon as the engine answered, before
  the wait that makes the submit's records durable (``JournaledEngine.submit_recorded``);
- ``idempotency.released``  principal, key: the request ended without an outcome worth
  replaying (400 bad input, a 5xx, a cancelled request): the key is free again.

Why this design (and not the alternatives):

* **The key is durable no later than its order.** The engine appends ``order.submitted``
  synchronously inside ``submit``, before its first suspension. ``idempotency.key`` is
  appended just before that call, in the same run of the loop, so it lands in the same
  group commit as the order record, ahead of it (or in an earlier one). A journal
  recovers a prefix of its records (a torn tail is dropped), so no crash leaves the order
  record without its key record. The acknowledgement waits for both as it always did.
* **The key is tied to its order without touching the order record.** Carrying the key
  inside ``order.submitted`` would mean changing the compiled hot path
  (``engine/hotpath.pyx``, ``journal/_hot.pyx``) that every request runs. Instead a key
  is linked to the *first* ``order.submitted`` that follows its key record when that
  record has the same account and request id; no other order record can come in
  between, because the two appends are in one synchronous step. The rule is the same
  live (a one-shot handler in the journal's handler table, installed only for that
  step: ``arm``) and in replay (``replay``), so a snapshot and a replay give the same
  keys. Requests without the header never reach
  this module: the compiled submit path and its fold are unchanged.
* **The outcome shares the order's durable wait.** ``idempotency.result`` is appended
  before ``JournaledEngine`` waits for the submit's records, so a keyed submit costs two
  small records and no extra write or fsync. The client sees its answer only once the
  result is durable, so after any restart a retry gets the first answer byte for byte.
* **Bounded.** The newest ``max_entries`` keys are remembered (default 10,000,
  ``FASTEXEC_IDEMPOTENCY_KEYS``), each for ``ttl_s`` after its first use (default 24 h,
  ``FASTEXEC_IDEMPOTENCY_TTL_S``), whichever forgets first; older ones are dropped as new
  keys arrive (by the key record's own timestamp, so a replay drops exactly what the
  live fold dropped) and never answered from. Snapshots carry the remembered keys (at
  most ``max_entries``, about 1 KB each with the stored response), and the records
  themselves go away with the segments a snapshot covers, like every other record.

The one case without a stored result: the process died after the order record was
durable and before the result record was, i.e. before the client got any answer (on
the OANDA path the order record goes out while the broker is still being asked). The key
is then linked to its order but has no result: a retry answers with the order as the
engine holds it now (its status may have moved on), or, when the engine no longer holds
it (it finished before the restart), ``409 IDEMPOTENCY_KEY_RESULT_LOST`` naming the order.
In no case is the order placed again.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Optional

#: Default number of keys remembered (the REST layer's in-memory store had the same bound).
MAX_ENTRIES = 10_000
#: Default seconds a key is remembered after its first use.
TTL_S = 24 * 3600

KEY = "idempotency.key"
RESULT = "idempotency.result"
RELEASED = "idempotency.released"
_SUBMITTED = "order.submitted"


class KeyEntry:
    """One remembered key: its request and, once known, its order and outcome."""

    __slots__ = ("digest", "ts", "account_id", "request_id", "client_order_id", "order_id", "status", "body")

    def __init__(self, digest: str, ts: int, account_id: Optional[str], request_id: Optional[str],
                 client_order_id: Optional[str], order_id: Optional[str] = None, status: Optional[int] = None,
                 body: Optional[str] = None) -> None:
        self.digest = digest
        self.ts = ts
        self.account_id = account_id
        self.request_id = request_id
        self.client_order_id = client_order_id  # the body's; once linked, the order's
        self.order_id = order_id
        self.status = status
        self.body = body

    def row(self) -> list:
        return [self.digest, self.ts, self.account_id, self.request_id, self.client_order_id, self.order_id,
                self.status, self.body]

    def matches(self, rec: dict) -> bool:
        """Is ``rec`` (an ``order.submitted``) the order this key's request placed?"""
        return rec.get("account_id") == self.account_id and rec.get("request_id") == self.request_id


class IdempotencyKeys:
    """The fold over the ``idempotency.*`` records, and their appender.

    Registered with a ``Journal`` (``Journal.add_fold("idempotency", keys)``): its state
    goes into every snapshot and is rebuilt from the newest one plus the records after it.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl_s: float = TTL_S) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_ns = int(ttl_s * 1_000_000_000)
        self.entries: "OrderedDict[tuple[str, str], KeyEntry]" = OrderedDict()
        self.journal: Any = None
        # the key whose order may be the next order.submitted (see the module docstring)
        self._waiting: Optional[KeyEntry] = None
        self._saved_handlers: Any = None

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ queries

    def get(self, principal: str, key: str, now_ns: Optional[int] = None) -> Optional[KeyEntry]:
        """The remembered entry of ``key``, or None (never seen, forgotten or expired)."""
        entry = self.entries.get((principal, key))
        if entry is None:
            return None
        if (time.time_ns() if now_ns is None else now_ns) - entry.ts > self.ttl_ns:
            return None
        return entry

    # ------------------------------------------------------------------ fold

    def apply(self, rec: dict) -> None:
        """Fold one ``idempotency.*`` record (others change nothing)."""
        t = rec.get("type")
        if t == KEY:
            self._on_key(rec)
        elif t == RESULT:
            entry = self.entries.get((rec["principal"], rec["key"]))
            if entry is not None and entry.digest == rec.get("digest"):
                entry.status = rec["status"]
                entry.body = rec["body"]
                if rec.get("order_id") is not None:
                    entry.order_id = rec["order_id"]
                if self._waiting is entry:
                    self._waiting = None
        elif t == RELEASED:
            entry = self.entries.pop((rec["principal"], rec["key"]), None)
            if entry is not None and self._waiting is entry:
                self._waiting = None

    def replay(self, rec: dict) -> None:
        """A record read back at start-up (every type: an ``order.submitted`` may link a key)."""
        t = rec.get("type")
        if t == _SUBMITTED:
            if self._waiting is not None:
                self._link(rec)
        elif t is not None and t.startswith("idempotency."):
            self.apply(rec)

    def _on_key(self, rec: dict) -> None:
        k = (rec["principal"], rec["key"])
        entries = self.entries
        entries.pop(k, None)  # a key used again after it was released or expired starts afresh
        ts = rec["ts"]
        entry = entries[k] = KeyEntry(rec["digest"], ts, rec.get("account_id"), rec.get("request_id"),
                                      rec.get("client_order_id"))
        self._waiting = entry
        # retention, decided by the records alone (a replay forgets exactly what the live fold forgot)
        horizon = ts - self.ttl_ns
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.ts >= horizon or oldest is entry:
                break
            entries.popitem(last=False)

    def _link(self, rec: dict) -> None:
        """``rec`` is the first ``order.submitted`` after the waiting key: its order if it matches."""
        entry, self._waiting = self._waiting, None
        if entry is not None and entry.order_id is None and entry.matches(rec):
            entry.order_id = rec.get("order_id")
            entry.client_order_id = rec.get("client_order_id")

    # ------------------------------------------------------------------ snapshots

    def to_dict(self) -> dict:
        return {"max_entries": self.max_entries,
                "entries": [[p, k] + e.row() for (p, k), e in self.entries.items()]}

    def load(self, data: Optional[dict]) -> None:
        """Start from a snapshot's part (None: from nothing)."""
        self.entries.clear()
        self._waiting = None
        if not data:
            return
        for row in data.get("entries", ()):
            p, k, digest, ts, account, rid, cid, oid, status, body = row
            self.entries[(p, k)] = KeyEntry(digest, ts, account, rid, cid, oid, status, body)
        while len(self.entries) > self.max_entries:  # a smaller bound than the snapshot's
            self.entries.popitem(last=False)

    # ------------------------------------------------------------------ live: appending

    def attach(self, journal: Any) -> None:
        self.journal = journal

    def _append(self, rec: dict) -> None:
        self.journal.append(rec)  # adds ts; raises (and nothing is folded) when the journal cannot take it
        self.apply(rec)

    def begin(self, principal: str, key: str, digest: str, *, account_id: Optional[str], request_id: Optional[str],
              client_order_id: Optional[str]) -> None:
        """Journal the key, then ``arm``: call right before the engine's submit, with no await between."""
        self._append({"type": KEY, "ts": time.time_ns(), "principal": principal, "key": key, "digest": digest,
                      "account_id": account_id, "request_id": request_id, "client_order_id": client_order_id})
        self.arm()

    def result(self, principal: str, key: str, digest: str, status: int, body: bytes,
               order_id: Optional[str]) -> None:
        self.disarm(principal, key)
        self._append({"type": RESULT, "principal": principal, "key": key, "digest": digest, "status": status,
                      "body": body.decode(), "order_id": order_id})

    def release(self, principal: str, key: str) -> None:
        self.disarm(principal, key)
        if (principal, key) in self.entries:
            self._append({"type": RELEASED, "principal": principal, "key": key})

    def arm(self) -> None:
        """Link the waiting key to the next ``order.submitted`` the journal folds, live.

        The journal folds through its own handler table (``Journal._handlers``, read per
        record); for this one synchronous step it holds a copy whose ``order.submitted``
        handler folds as before and then links. That record, or ``disarm``, puts the
        table back. Unkeyed submits never see the copy.
        """
        j = self.journal
        if self._saved_handlers is not None or self._waiting is None:
            return
        saved = j._handlers
        fold = saved.get(_SUBMITTED)

        def link_then_restore(state: Any, rec: dict) -> None:
            self._restore_handlers()
            if fold is not None:
                fold(state, rec)
            if self._waiting is not None:
                self._link(rec)

        table = dict(saved)
        table[_SUBMITTED] = link_then_restore
        self._saved_handlers = saved
        j._handlers = table

    def _restore_handlers(self) -> None:
        saved, self._saved_handlers = self._saved_handlers, None
        if saved is not None:
            self.journal._handlers = saved

    def disarm(self, principal: str, key: str) -> None:
        """The submit of ``key`` answered: stop waiting for its order record (if it still was)."""
        waiting = self._waiting
        if waiting is not None and self.entries.get((principal, key)) is waiting:
            self._waiting = None
            self._restore_handlers()


def keys_from_settings(settings: Any) -> IdempotencyKeys:
    return IdempotencyKeys(max_entries=getattr(settings, "idempotency_keys", MAX_ENTRIES),
                           ttl_s=getattr(settings, "idempotency_ttl_s", TTL_S))


__all__ = ["IdempotencyKeys", "KeyEntry", "MAX_ENTRIES", "TTL_S", "keys_from_settings"]
