"""/docs renders in a real (headless) browser with no internet and lists every endpoint."""
from __future__ import annotations

import asyncio
import shutil
import tempfile

from fastexec.api import OPERATIONS


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium not found: apt-get install chromium (scripts/test installs it)")


async def _dump_dom(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *extra,
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0
    return out.decode()


async def test_docs_page_lists_every_endpoint(api):
    dom = await _dump_dom(str(api.client.make_url("/docs#submitOrder")))
    assert "Loading /openapi.json" not in dom, "the page script did not render the spec"
    for op in OPERATIONS:
        assert f'id="{op.name}"' in dom, op.name
        assert f'class="path">{op.path}<' in dom, op.path
        assert f'class="m {op.method}">{op.method}<' in dom
    # the request body schema and an example are shown for submit
    assert "stop_loss" in dom and "client_order_id" in dom
    assert 'id="submitOrder" open=""' in dom


async def test_docs_page_needs_no_external_assets(api):
    resp = await api.client.get("/docs")
    html = await resp.text()
    assert resp.status == 200
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
