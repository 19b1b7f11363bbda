"""Issue 10, item 5: importing the SDK changes no other package; the rate limiter stays exact.

* Importing every module of ``alloy_async`` (the pytest plugin that the ``pytest11`` entry
  point loads in every pytest run of every project that installs the SDK, included) leaves
  every module already imported untouched: no module attribute is rebound or deleted, no class
  of theirs gains, loses or swaps an attribute. Checked in a fresh interpreter, with ``limits``
  (whose clock the SDK used to replace) imported first when it is installed.
* The rate limiter, on the virtual clock: ``N`` permits at ``rate`` with ``burst`` take
  ``(N - burst) / rate`` seconds, no window of ``burst / rate`` seconds holds more than
  ``burst``, and a waiter cancelled while it waits takes no permit and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alloy_async.limiters import RateLimiter

ROOT = Path(__file__).resolve().parent.parent

# Imports every module of the package (skipping only those whose optional extra is missing).
_IMPORT_SDK = """
import importlib, pkgutil, sys

def import_sdk():
    import alloy_async

    names = ["alloy_async"]
    for info in pkgutil.walk_packages(alloy_async.__path__, "alloy_async."):
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] == "alloy_async":
                raise
    return names
"""

_LIST_DEPENDENCIES = (
    _IMPORT_SDK
    + """
import json
import_sdk()
print(json.dumps(sorted(n for n in sys.modules if n.split(".")[0] != "alloy_async")))
"""
)

# attrs counts the fields it makes (every ``attrs.field()`` bumps this class-level int): a
# dependency's own bookkeeping, moved through its public API, not a patch.
_BOOKKEEPING = {"attr._make:_CountingAttr.cls_counter"}

_COMPARE = """
import importlib, json, sys

for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass

def snapshot():
    snap = {}
    for name, mod in list(sys.modules.items()):
        d = getattr(mod, "__dict__", None)
        if name == "__main__" or not isinstance(d, dict):
            continue
        snap[name] = {k: id(v) for k, v in d.items()}
        for k, v in list(d.items()):
            if isinstance(v, type) and getattr(v, "__module__", None) == name:
                snap[f"{name}:{k}"] = {a: id(b) for a, b in vars(v).items()}
    return snap

before = snapshot()
keep_alive = list(sys.modules.values())  # ids stay meaningful
import_sdk()
after = snapshot()
changed = []
for where, attrs in before.items():
    now = after.get(where)
    if now is None:
        changed.append(f"{where}: gone")
        continue
    is_class = ":" in where
    for attr, ident in attrs.items():
        if attr not in now:
            changed.append(f"{where}.{attr}: deleted")
        elif now[attr] != ident:
            changed.append(f"{where}.{attr}: replaced")
    if is_class:
        changed.extend(f"{where}.{attr}: added" for attr in now.keys() - attrs.keys())
# By name, what the SDK used to do to `limits` (when it is installed): replace its clock.
import time
try:
    import limits.aio.storage.memory as memory
except ImportError:
    limits_clock = "not installed"
else:
    limits_clock = "time" if memory.time is time else repr(memory.time)
print(json.dumps({"changed": sorted(changed), "limits_clock": limits_clock}))
"""


def _run(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_importing_the_sdk_changes_no_other_module() -> None:
    """Every module imported before the SDK (all it depends on, and ``limits``) has the same
    attributes, bound to the same objects, and so have its classes, after ``alloy_async`` and
    all its modules are imported."""
    deps = json.loads(_run(_LIST_DEPENDENCIES))
    deps += ["limits", "limits.aio.storage.memory", "limits.aio.strategies", "limits.strategies"]
    result = json.loads(_run(_IMPORT_SDK + _COMPARE, json.dumps(deps)))
    assert [c for c in result["changed"] if c.rsplit(":", 1)[0] not in _BOOKKEEPING] == []
    assert result["limits_clock"] in ("time", "not installed")


# -- the rate limiter on the virtual clock ----------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("rate", "burst", "permits"),
    [(100.0, 10, 5_000), (1000.0, 1, 5_000), (7.5, 3, 300), (0.5, 1, 20), (250.0, 25, 2_500)],
)
async def test_n_permits_take_n_minus_burst_over_rate_seconds(
    rate: float, burst: int, permits: int
) -> None:
    """Greedy demand from 8 tasks: the last of ``permits`` permits comes at
    ``(permits - burst) / rate`` s (within 1e-6 relative), in a moving window."""
    limiter = RateLimiter(rate, burst=burst)
    start = _now()
    stamps: list[float] = []

    async def worker() -> None:
        while len(stamps) < permits:
            await limiter.acquire()
            if len(stamps) < permits:
                stamps.append(_now() - start)

    await asyncio.gather(*(worker() for _ in range(8)))
    expected = (permits - burst) / rate
    assert stamps[-1] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert stamps[:burst] == [0.0] * burst  # the burst is there at once
    window = burst / rate
    for i in range(len(stamps) - burst):  # never more than `burst` in a window
        assert stamps[i + burst] - stamps[i] >= window * (1 - 1e-9)
    # Past the burst, the rate over a long stretch is the set rate (within one burst).
    whole = [t for t in stamps if 1.0 <= t < 1.0 + expected / 2]
    assert abs(len(whole) - rate * (expected / 2)) <= burst
    stats = limiter.statistics()
    assert stats.waiting == 0
    assert stats.acquired >= permits


@pytest.mark.virtual_time
async def test_a_cancelled_waiter_takes_no_permit_and_leaves_nothing_behind() -> None:
    """What ``execute_many`` does on stop: cancel tasks waiting in ``acquire()``. Neither the
    waiter sleeping for the next permit nor one queued behind it may use up a permit."""
    limiter = RateLimiter(2, burst=1)  # one permit per 0.5 s
    await limiter.acquire()  # t = 0
    head = asyncio.create_task(limiter.acquire())  # due at 0.5, sleeping
    queued = asyncio.create_task(limiter.acquire())  # due at 1.0, queued behind it
    await asyncio.sleep(0.25)
    assert limiter.statistics().waiting == 2
    queued.cancel()
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    with pytest.raises(asyncio.CancelledError):
        await queued
    stats = limiter.statistics()
    assert (stats.acquired, stats.waiting) == (1, 0)
    # The next caller gets the permit the cancelled head was waiting for: at 0.5, not later.
    waited = await limiter.acquire()
    assert _now() == pytest.approx(0.5)
    assert waited == pytest.approx(0.25)
    await limiter.acquire()
    assert _now() == pytest.approx(1.0)
    assert limiter.statistics().acquired == 3
    assert limiter.statistics().waited_seconds == pytest.approx(0.25 + 0.5)
