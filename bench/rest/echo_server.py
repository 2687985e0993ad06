"""The reference point for REST overhead: a bare aiohttp JSON echo server.

Same stack as ``fastexec serve`` (aiohttp on uvloop, orjson, no access log):
it decodes the request body and encodes it back, nothing else. Whatever
fastexec's REST submit achieves is quoted as a ratio of this server's rate,
measured in the same run on the same core, so the figure does not depend on
how busy the shared machine was.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps(body), status=201, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/echo", echo)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    print(f"listening http://{host}:{port}/echo", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="bare aiohttp JSON echo server (loopback)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    args = p.parse_args(argv)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(serve(args.host, args.port))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
