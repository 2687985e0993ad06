"""A journaled engine on the in-process venue, started and "crashed" the way the
restart tests need it: the venue outlives the engine, so what the next engine
recovers is the journal's files against the broker's state."""
from __future__ import annotations

from fastexec.config import Settings
from fastexec.journal.integration import JournaledEngine
from fastexec.sim.broker import SimulatedBroker


def settings() -> Settings:
    return Settings.from_env({"MAX_ORDERS_PER_SECOND": "10000"}, dotenv=False)


async def start(venue, path, broker=None) -> JournaledEngine:
    """``broker``: a broker over ``venue`` of the test's own (a ``SimulatedBroker`` by default)."""
    je = JournaledEngine(settings(), broker if broker is not None else SimulatedBroker(venue), journal_dir=str(path))
    await je.start()
    return je


async def crash(je: JournaledEngine) -> None:
    """What kill -9 leaves: the journal's files as they are, and no more events reaching the old engine."""
    je.journal.abandon()
    await je.engine.broker.stop()
