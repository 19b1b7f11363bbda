"""The virtual clock: time only moves when every task waits on a timer."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.virtual_time


async def test_sleep_advances_virtual_time_exactly() -> None:
    """A 100 s sleep takes 100 virtual seconds and no real time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(100)
    assert loop.time() - start == pytest.approx(100)
    assert loop.get_debug()


async def test_concurrent_sleeps_overlap() -> None:
    """Ten concurrent 5 s sleeps take 5 virtual seconds, not 50."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(asyncio.sleep(5) for _ in range(10)))
    assert loop.time() - start == pytest.approx(5)


async def test_wait_for_times_out_virtually() -> None:
    """wait_for fires at its virtual deadline."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.sleep(3600), 2.5)
    assert loop.time() - start == pytest.approx(2.5)
