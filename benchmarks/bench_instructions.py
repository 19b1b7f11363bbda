"""P1's and P2's client cost in instructions per request, which other load does not change.

``python -m benchmarks.bench_instructions [--no-gc] [TREE ...]``

On a shared machine wall-clock A/Bs cannot resolve a few per cent (see RESULTS.md, issue 23), so
this counts what the client executes: each client runs under ``valgrind --tool=cachegrind
--cache-sim=no`` (``PYTHONHASHSEED=0``), once with 500 and once with 3,000 requests, against the
light server in its own process (not counted); per request = the difference / 2,500, so
start-up and imports cancel out. P1: 64 tasks calling ``alloy.actions.execute``; P2:
``execute_many(concurrency=256)``; both over AlloyClient's default aiohttp transport.

``--no-gc`` turns the cyclic garbage collector off in the clients: what a collection costs
depends on when it lands (how many objects are alive then), which moves P2 by up to +-1 %
from run to run; without it the figure is what the code itself executes, steady to 0.1 %.

Each ``TREE`` (default: this checkout) is a checkout of the repository, e.g. a ``git worktree``
of an older commit: its ``alloy_async`` comes first on ``PYTHONPATH``, and every tree runs in
this interpreter's environment, so only the SDK's own code differs between them. Needs
valgrind (Debian: ``apt-get install valgrind``); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
from pathlib import Path

SIZES = (500, 3000)


async def client(variant: str, n: int, url: str, api_key: str, user: str, cred: str) -> None:
    """One client run: ``n`` executes of P1 (``pool``) or P2 (``many``)."""
    from alloy_async import AlloyClient
    from alloy_async.models.bulk import ExecuteJob

    jobs = [
        ExecuteJob(
            "sendgrid",
            "sendEmail",
            cred,
            user_id=user,
            request_body={"to": f"u{i}@x.io", "subject": "hi"},
        )
        for i in range(n)
    ]
    async with AlloyClient(api_key=api_key, base_url=url) as alloy:
        if variant == "pool":
            it = iter(jobs)

            async def worker() -> None:
                for j in it:
                    await alloy.actions.execute(
                        j.connector_id,
                        j.action_id,
                        credential_id=j.credential_id,
                        user_id=j.user_id,
                        request_body=j.request_body,
                    )

            await asyncio.gather(*(worker() for _ in range(64)))
            return
        ok = 0
        async with alloy.actions.execute_many(iter(jobs), concurrency=256) as bulk:
            async for outcome in bulk:
                ok += outcome.ok
        assert ok == n, bulk.report.summary()


def instructions(
    tree: Path, variant: str, n: int, server: list[str], *, gc_off: bool = False
) -> int:
    """The client's instruction count for one run (``gc_off``: the collector disabled)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            # As a script: an older tree's benchmarks/ may not have this module.
            str(Path(__file__).resolve()),
            *(["--no-gc"] if gc_off else []),
            "--client",
            variant,
            str(n),
            *server,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_instructions")
    parser.add_argument("trees", nargs="*", type=Path, default=[Path.cwd()])
    parser.add_argument("--no-gc", action="store_true", help="the collector off in the clients")
    parser.add_argument("--client", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        if args.no_gc:
            gc.disable()
        variant, n, url, key, user, cred = args.client
        asyncio.run(client(variant, int(n), url, key, user, cred))
        return
    from ._common import light_process  # not in --client runs: a script has no package

    with light_process() as sb:
        server = [sb.url, sb.api_key, sb.user_id, sb.credential_id]
        for tree in args.trees:
            per = {}
            for variant in ("pool", "many"):
                small, large = (
                    instructions(tree, variant, n, server, gc_off=args.no_gc) for n in SIZES
                )
                per[variant] = (large - small) // (SIZES[1] - SIZES[0])
            gc_note = " (collector off)" if args.no_gc else ""
            print(
                f"{tree}: P1 {per['pool']:,} instr/request, P2 {per['many']:,} instr/request"
                + gc_note
            )


if __name__ == "__main__":
    main()
