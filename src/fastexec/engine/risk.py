"""The engine's side of the risk gateway: limits per account, trading state,
the order-rate bucket, risk metrics and the risk score.

The checks run in the compiled kernel (``fastexec._core.risk``), one call
per order (``RiskEngine.gate``), in this order: trading halted,
``MAX_CONCURRENT_ORDERS`` (working orders per account, seed env
``MAX_CONCURRENT_ORDERS``), instrument restricted, units per order,
reduce-only (REDUCING state), position size, positions per instrument, daily
loss, leverage, margin, and last ``ORDER_RATE_LIMIT`` (token bucket,
``MAX_ORDERS_PER_SECOND``, burst = one second's worth), so only orders that
would be sent take a token and ``validate`` can look without taking one.

Risk score (0–100, per account), documented here and in the README::

    u_leverage = gross position value / NAV / max_leverage
    u_margin   = margin used / (NAV * (1 - required_margin_ratio))
    u_loss     = max(0, -daily P&L) / max_daily_loss
    u_position = max over instruments |net units| / max_position_size
    score      = round_half_even(100 * max(u_leverage, u_margin, u_loss, u_position)),
                 clamped to 0..100; 100 when the account is HALTED or NAV <= 0
                 with positions open; 0 for an account with no positions and
                 no loss today.

Each ``u`` is how much of one limit is used, so the score reads as "the
tightest limit is N % used": 80 means some limit is 80 % consumed, 100 means
at (or past) a limit. A disabled limit contributes 0. Everything is integer
arithmetic on the core's fixed-point values.
"""
from __future__ import annotations

from typing import Optional

from fastexec._core.fixedpoint import MAX_MONEY, MAX_RATE, MAX_UNITS, RATE_SCALE
from fastexec._core.risk import RiskCode, RiskEngine
from fastexec._core.risk import TradingState as CoreTradingState
from fastexec.config import Settings
from fastexec.errors import ValidationError

from .types import TradingState
from .views import RiskLimitsView, RiskMetrics

NANO = 1_000_000_000
_CODE_NAMES = {int(c): c.name for c in RiskCode}

# Limit name -> (kernel keyword or None, maximum, scale description)
_LIMITS = {
    "max_position_size": ("max_position_size", MAX_UNITS, "units"),
    "max_positions_per_instrument": ("max_positions_per_instrument", 10**9, "count"),
    "max_leverage": ("max_leverage", MAX_RATE, "rate"),
    "required_margin_ratio": ("required_margin_ratio", RATE_SCALE, "rate"),
    "max_daily_loss": ("max_daily_loss", MAX_MONEY, "money"),
    "max_units_per_order": ("max_units_per_order", MAX_UNITS, "units"),
    "max_orders_per_second": (None, 10**9, "count"),
    "max_concurrent_orders": (None, 10**9, "count"),
}


def _div_half_even(num: int, den: int) -> int:
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q & 1):
        q += 1
    return q


_KERNEL_MAX = 10**9  # the kernel's bound on orders_per_second and max_working_orders


def _kernel_rate(rate: int) -> Optional[int]:
    """MAX_ORDERS_PER_SECOND for the kernel: 0 (or less) disables the bucket;
    above its bound it is capped (a burst of 10**9 orders, unreachable)."""
    return None if rate <= 0 else min(rate, _KERNEL_MAX)


def _kernel_working(limit: int) -> Optional[int]:
    """MAX_CONCURRENT_ORDERS for the kernel: above its bound no count reaches it."""
    return None if limit > _KERNEL_MAX else max(limit, 0)


class RiskGateway:
    """Wraps the kernel with the parts that need Python state."""

    def __init__(self, settings: Settings, ledger, store, instruments, max_accounts: int) -> None:
        self.kernel = RiskEngine(ledger, store)
        self._ledger = ledger
        self._store = store
        self._instruments = instruments
        self._settings = settings
        n = max_accounts
        self._base = [TradingState.ACTIVE] * n
        self._halted = [False] * n
        # The configured numbers (limits_record); the bucket and the counts live in the kernel.
        self._rate = [0] * n
        self._max_working = [0] * n
        self._restricted: list[frozenset] = [frozenset()] * n

    def add_account(self, a: int) -> None:
        s = self._settings
        self.kernel.set_limits(
            a,
            max_units_per_order=s.max_units_per_order,
            max_position_size=s.max_position_size,
            max_positions_per_instrument=s.max_positions_per_instrument,
            max_leverage=s.max_leverage,
            required_margin_ratio=s.required_margin_ratio,
            max_daily_loss=s.max_daily_loss,
        )
        self._rate[a] = s.max_orders_per_second
        self._max_working[a] = s.max_concurrent_orders
        self.kernel.set_limits(a, orders_per_second=_kernel_rate(s.max_orders_per_second),
                               max_working_orders=_kernel_working(s.max_concurrent_orders))

    # ------------------------------------------------------------------ the check

    def check(self, a: int, i: int, units: int, now_ns: int, consume: bool) -> tuple[Optional[str], Optional[str]]:
        """(None, None) when the order may go, else (code, "CODE: key=value ...").
        One kernel call (``RiskEngine.gate``): the working-order count, the
        kernel's checks, then the rate bucket."""
        code = self.kernel.gate(a, i, units, now_ns, consume)
        if code:
            return _CODE_NAMES[code], self.kernel.last_denial
        return None, None

    def check_existing(self, a: int, i: int, units: int, now_ns: int, consume: bool, *, own: int):
        """Check for an order that is already counted as working (a modify, an
        emulated order at its trigger): the kernel's ``existing`` flag counts
        the order being checked once, not twice, in its per-instrument limit
        and skips the concurrency limit; ``own`` is the order's signed
        remaining units (units - filled) the store counts now, which the
        reduce-only and position-size checks leave out of the other working
        orders (``units`` is what the order will have left to fill)."""
        code = self.kernel.check(a, i, units, now_ns, consume, True, own)
        if code:
            return _CODE_NAMES[code], self.kernel.last_denial
        return None, None

    # ------------------------------------------------------------------ state

    def _apply_state(self, a: int) -> None:
        if self._halted[a]:
            st = CoreTradingState.HALTED
        elif self._base[a] is TradingState.REDUCING:
            st = CoreTradingState.REDUCING
        else:
            st = CoreTradingState.ACTIVE
        self.kernel.set_trading_state(a, st)

    def set_base_state(self, a: int, state: TradingState) -> None:
        self._base[a] = state
        self._apply_state(a)

    def set_halted(self, a: int, halted: bool) -> None:
        self._halted[a] = halted
        self._apply_state(a)

    def state_name(self, a: int) -> str:
        if self._halted[a]:
            return TradingState.HALTED.value
        return self._base[a].value

    # ------------------------------------------------------------------ limits

    def limits_record(self, a: int) -> dict:
        k = self.kernel.limits(a)
        return {
            "max_position_size": k["max_position_size"],
            "max_positions_per_instrument": k["max_positions_per_instrument"],
            "max_leverage": k["max_leverage"],
            "required_margin_ratio": k["required_margin_ratio"] or 0,
            "max_daily_loss": k["max_daily_loss"],
            "max_units_per_order": k["max_units_per_order"],
            "max_orders_per_second": self._rate[a],
            "max_concurrent_orders": self._max_working[a],
        }

    def limits_view(self, account_id: str, a: int) -> RiskLimitsView:
        r = self.limits_record(a)
        restricted = frozenset(inst.name for inst in self._instruments if not self.kernel.is_allowed(a, inst.index))
        return RiskLimitsView(account_id=account_id, restricted_instruments=restricted, **r)

    def set_limits(self, a: int, changes: dict) -> None:
        """Validate every change first, then apply them all (never half-applied)."""
        kernel_kw: dict = {}
        py: dict = {}
        restricted = None
        for name, value in changes.items():
            if name == "restricted_instruments":
                if isinstance(value, str) or not hasattr(value, "__iter__"):
                    raise ValidationError("restricted_instruments must be a list of instrument names",
                                          code="INVALID_LIMIT", field=name)
                names = list(value)
                idx = []
                for nm in names:
                    if not isinstance(nm, str) or nm not in self._instruments:
                        raise ValidationError(f"unknown instrument {nm!r} in restricted_instruments",
                                              code="UNKNOWN_INSTRUMENT", field=name)
                    idx.append(self._instruments.index(nm))
                restricted = idx
                continue
            spec = _LIMITS.get(name)
            if spec is None:
                raise ValidationError(f"unknown risk limit {name!r} (known: {sorted(_LIMITS) + ['restricted_instruments']})",
                                      code="UNKNOWN_LIMIT", field=name)
            kw, hi, _ = spec
            if type(value) is not int:
                raise ValidationError(f"{name} must be an integer at its fixed-point scale", code="INVALID_LIMIT", field=name)
            lo = 1 if name in ("max_positions_per_instrument", "max_units_per_order", "max_orders_per_second",
                               "max_concurrent_orders") else 0
            if value < lo or value > hi:
                raise ValidationError(f"{name}={value} outside {lo}..{hi}", code="INVALID_LIMIT", field=name)
            if kw is None:
                py[name] = value
            else:
                kernel_kw[kw] = value
        if kernel_kw:
            self.kernel.set_limits(a, **kernel_kw)
        if "max_orders_per_second" in py:
            self._rate[a] = py["max_orders_per_second"]
            # the kernel's bucket starts full again, as on add_account
            self.kernel.set_limits(a, orders_per_second=_kernel_rate(self._rate[a]))
        if "max_concurrent_orders" in py:
            self._max_working[a] = py["max_concurrent_orders"]
            self.kernel.set_limits(a, max_working_orders=_kernel_working(self._max_working[a]))
        if restricted is not None:
            self.kernel.allow_all(a)
            if restricted:
                self.kernel.deny(a, restricted)

    # ------------------------------------------------------------------ metrics

    def metrics(self, account_id: str, a: int, day_start_ns: int) -> RiskMetrics:
        s = self._ledger.account_state(a)
        lim = self.kernel.limits(a)
        nav = s.nav
        gross = s.position_value
        net = 0
        max_units = 0
        for _i, p in self._ledger.positions(a).items():
            net += p.position_value if p.units > 0 else -p.position_value
            max_units = max(max_units, abs(p.units))
        if nav > 0:
            leverage = min(MAX_RATE, _div_half_even(gross * RATE_SCALE, nav))
            margin_util = min(MAX_RATE, _div_half_even(s.margin_used * RATE_SCALE, nav))
        else:
            leverage = MAX_RATE if gross else 0
            margin_util = MAX_RATE if s.margin_used else 0
        u = []  # each at RATE_SCALE
        if lim["max_leverage"]:
            u.append(_div_half_even(leverage * RATE_SCALE, lim["max_leverage"]))
        rmr = lim["required_margin_ratio"] or 0
        if nav > 0 and rmr < RATE_SCALE:
            allowed = nav * (RATE_SCALE - rmr)  # money * RATE_SCALE
            u.append(_div_half_even(s.margin_used * RATE_SCALE * RATE_SCALE, allowed))
        if lim["max_daily_loss"]:
            u.append(_div_half_even(max(0, -s.daily_pl) * RATE_SCALE, lim["max_daily_loss"]))
        if lim["max_position_size"]:
            u.append(_div_half_even(max_units * RATE_SCALE, lim["max_position_size"]))
        if self._halted[a] or (nav <= 0 and s.open_positions):
            score = 100
        else:
            score = min(100, _div_half_even(100 * max(u, default=0), RATE_SCALE))
        return RiskMetrics(
            account_id=account_id,
            exposure=gross,
            net_exposure=net,
            leverage=leverage,
            margin_utilisation=margin_util,
            daily_pl=s.daily_pl,
            daily_loss_limit=lim["max_daily_loss"] or 0,
            risk_score=score,
            trading_state=self.state_name(a),
            working_orders=self._store.working_count_account(a),
            open_positions=s.open_positions,
            trading_day_start=day_start_ns,
        )
