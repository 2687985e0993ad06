"""Shared helpers for the simulator tests: a running SimServer and a JSON client."""
from __future__ import annotations

import aiohttp
import pytest

from fastexec.sim.testing import SimServer


class Client:
    """Thin JSON client over one aiohttp session, returning (status, body)."""

    def __init__(self, sim: SimServer, session: aiohttp.ClientSession):
        self.sim = sim
        self.s = session
        self.aid = sim.account_ids[0]

    def url(self, path: str) -> str:
        return f"{self.sim.base_url}/v3/accounts/{self.aid}{path}"

    async def req(self, method: str, path: str, body=None, absolute: bool = False):
        url = self.sim.base_url + path if absolute else self.url(path)
        async with self.s.request(method, url, json=body) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path, **kw):
        return await self.req("GET", path, **kw)

    async def post(self, path, body):
        return await self.req("POST", path, body)

    async def put(self, path, body=None):
        return await self.req("PUT", path, body)


@pytest.fixture
async def sim():
    async with SimServer(seed=1, accounts=2, balance="100000") as s:
        yield s


@pytest.fixture
async def client(sim):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as session:
        yield Client(sim, session)
