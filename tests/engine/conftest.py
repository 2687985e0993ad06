import pytest

from .harness import make_harness


@pytest.fixture
async def h():
    harness = await make_harness()
    yield harness
    await harness.engine.stop()
