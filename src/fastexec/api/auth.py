"""Bearer tokens scoped to accounts.

Tokens come from ``Settings.api_tokens`` (``FASTEXEC_API_TOKENS``). When none
are configured the API is open (it binds 127.0.0.1 by default, so "open"
means "open to this machine"); once any token is configured, every
``/api/v1`` request needs one, reads included, because positions, orders and
risk figures of an account are as sensitive as the right to trade it.
``/health``, ``/openapi.json`` and ``/docs`` stay open: they carry no account
data and monitoring must reach them without a secret.

Tokens are looked up by their SHA-256 digest and the stored digest is then
compared with ``hmac.compare_digest``, so response time does not depend on how
many leading characters of a guess were right. A token itself is never
logged; a principal is named by a short fingerprint of its digest instead.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping, Optional

from fastexec.errors import ForbiddenError, UnauthorizedError


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``name`` is safe to log; ``accounts`` None = all."""

    name: str
    accounts: Optional[frozenset[str]]

    def allows(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts

    def check(self, account_id: str) -> None:
        if self.accounts is not None and account_id not in self.accounts:
            raise ForbiddenError(f"this token may not act on account {account_id}", code="FORBIDDEN", field="account_id")


ANONYMOUS = Principal("anonymous", None)


def fingerprint(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:10]


class Authenticator:
    def __init__(self, tokens: Mapping[str, frozenset[str]] | None) -> None:
        self._by_digest: dict[bytes, tuple[bytes, Principal]] = {}
        for token, accounts in (tokens or {}).items():
            digest = hashlib.sha256(token.encode()).digest()
            scope = None if "*" in accounts else frozenset(accounts)
            self._by_digest[digest] = (digest, Principal(fingerprint(token), scope))
        self.enabled = bool(self._by_digest)

    def authenticate(self, header: Optional[str]) -> Principal:
        """The principal for an ``Authorization`` header value, or 401."""
        if not self.enabled:
            return ANONYMOUS
        if not header:
            raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <token>'", code="UNAUTHORIZED")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("the Authorization header must be 'Bearer <token>'", code="UNAUTHORIZED")
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry[0], digest):
            raise UnauthorizedError("invalid bearer token", code="UNAUTHORIZED")
        return entry[1]
