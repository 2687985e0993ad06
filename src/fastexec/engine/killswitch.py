"""Kill switches: per account and one global.

A kill switch is a record, not just a flag: who pulled it, why and when is
what an operator needs in the post-mortem, and "stays active until explicitly
released" means nothing clears it implicitly (not a restart of the broker
stream, not a new trading day). The engine consults ``blocks(account_id)``
before the risk gateway, so a halted account is refused without touching any
other state.
"""
from __future__ import annotations

from typing import Optional

from .views import KillSwitchView


class KillSwitch:
    __slots__ = ("account_id", "active", "reason", "actor", "activated_at", "released_by", "released_at", "_owner")

    def __init__(self, account_id: Optional[str], owner: Optional["KillSwitches"] = None) -> None:
        self.account_id = account_id
        self._owner = owner
        self.active = False
        self.reason: Optional[str] = None
        self.actor: Optional[str] = None
        self.activated_at: Optional[int] = None
        self.released_by: Optional[str] = None
        self.released_at: Optional[int] = None

    def activate(self, reason: str, actor: str, now_ns: int) -> bool:
        """True if this pulled the switch; False if it was already active. A
        second pull keeps the first one's who, why and when: the post-mortem
        needs the activation that stopped trading, not the latest echo of it."""
        if self.active:
            return False
        if self._owner is not None:
            self._owner.n_active += 1
        self.active = True
        self.reason = reason
        self.actor = actor
        self.activated_at = now_ns
        self.released_by = None
        self.released_at = None
        return True

    def release(self, actor: str, now_ns: int) -> None:
        if self.active and self._owner is not None:
            self._owner.n_active -= 1
        self.active = False
        self.released_by = actor
        self.released_at = now_ns

    def view(self, cancelled: tuple[str, ...] = (), flattened: tuple[str, ...] = (),
             cancel_failed: tuple[str, ...] = ()) -> KillSwitchView:
        return KillSwitchView(
            account_id=self.account_id,
            active=self.active,
            reason=self.reason,
            actor=self.actor,
            activated_at=self.activated_at,
            released_by=self.released_by,
            released_at=self.released_at,
            cancelled_orders=cancelled,
            flattened=flattened,
            cancel_failed=cancel_failed,
        )


class KillSwitches:
    """The global switch plus one per account, created on first use."""

    __slots__ = ("global_switch", "_accounts", "n_active")

    def __init__(self) -> None:
        # how many switches are active: the order path reads this one int and
        # looks no further while it is 0
        self.n_active = 0
        self.global_switch = KillSwitch(None, self)
        self._accounts: dict[str, KillSwitch] = {}

    @property
    def any_active(self) -> bool:
        return self.n_active > 0

    def get(self, account_id: Optional[str]) -> KillSwitch:
        if account_id is None:
            return self.global_switch
        ks = self._accounts.get(account_id)
        if ks is None:
            ks = self._accounts[account_id] = KillSwitch(account_id, self)
        return ks

    def blocking(self, account_id: str) -> Optional[KillSwitch]:
        """The active switch that blocks ``account_id`` (global first), or None."""
        if not self.n_active:
            return None
        if self.global_switch.active:
            return self.global_switch
        ks = self._accounts.get(account_id)
        if ks is not None and ks.active:
            return ks
        return None
