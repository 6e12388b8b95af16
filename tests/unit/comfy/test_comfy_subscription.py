"""The bounded inbox: ordering, overflow policy, timeouts and closing."""

from __future__ import annotations

import asyncio

import pytest

from comfyui_api.comfy.messages import (
    ComfyExited,
    Executed,
    Executing,
    ExecutionSuccess,
    Preview,
    Progress,
    StatusMessage,
    StreamDisconnected,
)
from comfyui_api.comfy.subscription import Subscription, SubscriptionClosed


def progress(value: int) -> Progress:
    return Progress("p", "3", value, 100)


async def test_messages_come_out_in_order() -> None:
    sub = Subscription("p")
    sub.deliver(Executing("p", "1"))
    sub.deliver(progress(1))
    assert await sub.get(1) == Executing("p", "1")
    assert await sub.get(1) == progress(1)


async def test_get_times_out_when_nothing_arrives() -> None:
    sub = Subscription("p")
    with pytest.raises(TimeoutError):
        await sub.get(0.01)


async def test_get_wakes_up_on_delivery() -> None:
    sub = Subscription("p")
    waiter = asyncio.create_task(sub.get(5))
    await asyncio.sleep(0)
    sub.deliver(ExecutionSuccess("p", 1))
    assert await waiter == ExecutionSuccess("p", 1)


async def test_overflow_drops_oldest_progress_first() -> None:
    sub = Subscription("p", max_items=3)
    sub.deliver(Executing("p", "1"))
    sub.deliver(progress(1))
    sub.deliver(progress(2))
    sub.deliver(progress(3))  # drops progress(1)
    assert sub.dropped_count == 1
    assert [sub.get_nowait() for _ in range(3)] == [Executing("p", "1"), progress(2), progress(3)]


async def test_terminal_frames_are_never_dropped() -> None:
    sub = Subscription("p", max_items=2)
    sub.deliver(Executed("p", "9", {"images": []}))
    sub.deliver(Executing("p", "9"))
    sub.deliver(progress(1))  # queue full of non-lossy messages: the incoming lossy one is dropped
    sub.deliver(ExecutionSuccess("p", 1))  # drops the oldest non-terminal message instead
    sub.deliver(Executing("p", None))
    sub.deliver(ComfyExited(1))
    items = []
    while (item := sub.get_nowait()) is not None:
        items.append(item)
    assert ExecutionSuccess("p", 1) in items
    assert Executing("p", None) in items
    assert ComfyExited(1) in items
    assert progress(1) not in items


async def test_preview_bytes_are_bounded_separately() -> None:
    sub = Subscription("p", max_items=100, max_preview_bytes=10)
    sub.deliver(Preview("p", "1", "image/png", b"123456"))
    sub.deliver(StatusMessage(1))
    sub.deliver(Preview("p", "1", "image/png", b"abcdef"))  # 12 bytes > 10: the first preview goes
    items = [sub.get_nowait(), sub.get_nowait(), sub.get_nowait()]
    assert items == [StatusMessage(1), Preview("p", "1", "image/png", b"abcdef"), None]
    assert sub.dropped_count == 1


async def test_close_drains_then_ends_iteration() -> None:
    closed: list[Subscription] = []
    sub = Subscription("p", on_close=closed.append)
    sub.deliver(StreamDisconnected("x"))
    sub.close()
    sub.close()  # idempotent
    sub.deliver(progress(1))  # ignored after close
    assert closed == [sub]
    assert [message async for message in sub] == [StreamDisconnected("x")]
    with pytest.raises(SubscriptionClosed):
        await sub.get(1)


async def test_close_wakes_a_waiting_reader() -> None:
    sub = Subscription("p")
    waiter = asyncio.create_task(sub.get(5))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await waiter


async def test_context_manager_closes() -> None:
    with Subscription(None) as sub:
        assert not sub.closed
    assert sub.closed
