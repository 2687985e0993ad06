"""OANDA v20 adapter: ``OandaBroker`` implements ``fastexec.brokers.base.Broker``.

Configure with ``OandaConfig.from_env()`` (``OANDA_API_KEY``,
``OANDA_ACCOUNT_ID`` — comma-separated for several — ``OANDA_ENVIRONMENT``
practice|live, optional ``OANDA_REST_URL`` / ``OANDA_STREAM_URL`` to point at
the simulator, ``OANDA_GSLO_STYLE`` legacy|modern for how a guaranteed stop
loss on fill is sent), then::

    broker = OandaBroker(OandaConfig.from_env())
    broker.set_event_handler(engine.on_broker_event)
    broker.set_resume_point(account_id, journal_last_txn_id)   # optional
    await broker.start()          # accounts, precisions, transaction streams

What the engine can rely on, beyond ``Broker``'s docstring:

* an order request (submit, replace, trade or position close) is never sent
  twice. When its answer is lost or is a 5xx the result comes from looking
  it up (a submit by client id, a replace by the order it replaces, a close
  by the venue's transactions since it was sent); if the venue has
  no record within ``resolve_window_s`` the result is
  ``OrderRejected(reason=NOT_PLACED)``, and if even the lookups keep failing
  ``submit`` raises ``BrokerError`` (state unknown; the transaction stream
  reports the order if it exists). Only a 429 (refused unprocessed) is sent
  again;
* v20 rejects come back as ``OrderRejected`` with OANDA's reason code, never
  retried; reads and cancels are retried (429/5xx/transport, jittered backoff);
  a ``Retry-After`` (seconds or HTTP-date) is waited out up to
  ``retry_after_max_s``, and one asking for longer ends the retries;
* every transaction reaches the event handler once, in id order, across
  stream reconnects (replay by ``sinceid``); one the adapter cannot turn into
  an event (say, a fill in fractional units of an instrument the engine does
  not trade) is logged as an error by id, counted (``stats["skipped_txns"]``)
  and skipped, never taking its neighbours with it; ``OrderAccepted`` means
  the order is working (an order filled or cancelled in its own batch is
  reported by that fill/cancel alone, as ``SimulatedBroker`` does);
* ``stop()`` returns once every stream task has ended, without waiting on a
  stream's timeout; a cancellation of the task calling it propagates;
* ≤ ``max_requests_per_s`` requests and ≤ ``max_new_connections_per_s`` new
  connections in any second, at most ``pool_size`` REST connections.
"""
from .broker import NOT_PLACED, OandaBroker
from .config import OandaConfig, OandaConfigError, OandaTimeouts
from .limits import ConnectionRateLimiter, RequestRateLimiter
from .types import AccountChanges, OandaInstrument, OandaTrade

__all__ = [
    "NOT_PLACED",
    "AccountChanges",
    "ConnectionRateLimiter",
    "OandaBroker",
    "OandaConfig",
    "OandaConfigError",
    "OandaInstrument",
    "OandaTimeouts",
    "OandaTrade",
    "RequestRateLimiter",
]
