"""The app's background tasks stop at shutdown even when a cancellation is lost inside their work."""

from __future__ import annotations

import asyncio
import time

from identity.app import _every, _stop


async def test_a_task_whose_work_swallows_the_cancel_still_stops() -> None:
    """Python 3.11's ``asyncio.wait_for`` can lose a cancel; the task then slept on and shutdown hung forever."""
    ran = 0

    async def swallowing_work() -> None:
        nonlocal ran
        ran += 1
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # what a lost cancel looks like from outside: the task goes on

    stopping = asyncio.Event()
    task = asyncio.create_task(_every(0.01, swallowing_work, "test", stopping))
    while ran == 0:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await _stop([task], stopping)
    assert task.done()
    assert time.monotonic() - started < 2.0


async def test_a_task_with_a_long_interval_stops_at_once() -> None:
    stopping = asyncio.Event()

    async def work() -> None:
        raise AssertionError("never reached: the first tick is an hour away")

    task = asyncio.create_task(_every(3600, work, "test", stopping))
    await asyncio.sleep(0)
    started = time.monotonic()
    await _stop([task], stopping)
    assert task.cancelled()
    assert time.monotonic() - started < 0.5


async def test_a_failing_work_is_retried_at_the_next_tick() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the database is down")

    stopping = asyncio.Event()
    task = asyncio.create_task(_every(0.01, failing, "test", stopping))
    while calls < 3:
        await asyncio.sleep(0.01)
    await _stop([task], stopping)
    assert task.done()
