"""A light HTTP server for the benchmarks: canned execute answers, no simulator.

``python -m benchmarks.light_server [--port 0]`` serves ``POST
/connectors/{connector}/actions/{action}/execute`` on 127.0.0.1 with the same bytes the sandbox
answers a successful sendgrid ``sendEmail`` with (status 200, ``application/json``, an
``x-request-id``), but reads and discards the request body without parsing it, checking it or
recording anything. Against the sandbox (aiohttp.web + the FakeAlloy simulator) the server is the
bottleneck on a small machine and wall-clock ratios drift towards 1.0 whatever the client costs;
against this one, more of the wall clock is the client's own.

It prints the sandbox's three-line banner (URL, API key, demo user and credential), so
:func:`benchmarks._common.light_process` parses it like the sandbox's. The key and ids are made
up: nothing checks them.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from alloy_async.cli._signals import wait_for_stop

HOST = "127.0.0.1"  # loopback only, like the sandbox
API_KEY = "sk_light_benchmark_key"
USER_ID = "0123456789abcdef01234567"
CREDENTIAL_ID = "89abcdef0123456789abcdef"
#: The sandbox's answer to a successful sendEmail, byte for byte (66 bytes); the message id is
#: fixed since nothing reads it.
BODY = b'{"success":true,"result":{"messageId":"eb1167b367a9c3787c65c1e5"}}'


def make_app() -> web.Application:
    """The app: one route, canned answer, a request id per answer like the sandbox's."""
    served = 0

    async def execute(request: web.Request) -> web.Response:
        nonlocal served
        await request.read()  # drain the body so the connection can be reused; never parse it
        served += 1
        return web.Response(
            body=BODY,
            headers={"content-type": "application/json", "x-request-id": f"req_{served:08d}"},
        )

    app = web.Application()
    app.router.add_post("/connectors/{connector}/actions/{action}/execute", execute)
    return app


async def serve(port: int) -> None:
    """Serve until SIGTERM or SIGINT (``sandbox_process`` ends its servers with SIGTERM)."""
    runner = web.AppRunner(make_app(), handle_signals=False, access_log=None)
    await runner.setup()
    # A backlog as large as the sandbox's, so 256 connections opened at once are not refused.
    site = web.TCPSite(runner, HOST, port, backlog=1024)
    await site.start()
    try:
        url = f"http://{HOST}:{runner.addresses[0][1]}"  # the port picked when --port is 0
        # flush: the parent reads the banner through a pipe while this process keeps running.
        print(f"light server listening on {url}", flush=True)
        print(f"ALLOY_BASE_URL={url} ALLOY_API_KEY={API_KEY}", flush=True)
        print(f"demo user {USER_ID} has sendgrid credential {CREDENTIAL_ID}", flush=True)
        await wait_for_stop()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.light_server")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
