"""The prompt queue: raw heap order, running items, history pagination, deletion and the status callback."""

from __future__ import annotations

from typing import Any

from comfyui_api.simulator.prompt_queue import MAX_HISTORY_ITEMS, ExecutionStatus, PromptQueue


def make_queue() -> tuple[PromptQueue, list[int]]:
    changes: list[int] = []
    queue = PromptQueue(on_change=lambda: changes.append(1))
    return queue, changes


def item(number: float, prompt_id: str, extra: dict[str, Any] | None = None) -> tuple[Any, ...]:
    return (number, prompt_id, {"1": {}}, extra if extra is not None else {}, ["1"])


def finish(queue: PromptQueue, prompt_id: str, number: float = 0) -> None:
    queue.put(item(number, prompt_id))
    got = queue.get(timeout_s=0)
    assert got is not None
    queue.task_done(got[1], {"outputs": {}, "meta": {}}, ExecutionStatus("success", True, []))


def test_pending_is_the_raw_heap_as_recorded() -> None:
    # captures/queue_interrupt_free.json: pending numbers [-62, 58, 60, 61, 59] while 57 runs
    queue, _ = make_queue()
    for number in (57, 58, 59, 60, 61, -62):
        queue.put(item(number, f"p{number}"))
        if number == 57:
            assert queue.get(timeout_s=0) is not None
    running, pending = queue.current()
    assert [i[0] for i in running] == [57]
    assert [i[0] for i in pending] == [-62, 58, 60, 61, 59]
    assert queue.remaining() == 6


def test_equal_numbers_do_not_break_the_heap() -> None:
    queue, _ = make_queue()
    queue.put(item(1.0, "same"))
    queue.put(item(1.0, "same"))
    assert queue.remaining() == 2


def test_delete_ignores_unknown_and_running_ids_and_announces_changes() -> None:
    queue, changes = make_queue()
    for number in (1, 2, 3):
        queue.put(item(number, f"p{number}"))
    assert queue.get(timeout_s=0) is not None
    changes.clear()
    assert queue.delete("p1") is False  # running
    assert queue.delete("nope") is False
    assert changes == []
    assert queue.delete("p2") is True
    assert len(changes) == 1
    assert queue.delete("p3") is True  # the last pending one: ComfyUI wipes, announcing twice
    assert len(changes) == 3
    assert queue.current() == ([item(1, "p1")], [])


def test_history_is_in_completion_order_with_comfyui_pagination() -> None:
    queue, _ = make_queue()
    for index in range(5):
        finish(queue, f"h{index}")
    assert list(queue.history()) == ["h0", "h1", "h2", "h3", "h4"]
    assert list(queue.history(max_items=2)) == ["h3", "h4"]  # the last N
    assert list(queue.history(offset=3)) == ["h3", "h4"]  # from the K-th oldest
    assert list(queue.history(max_items=2, offset=1)) == ["h1", "h2"]
    assert queue.history_item("h2")["h2"]["status"]["status_str"] == "success"
    assert queue.history_item("nope") == {}


def test_history_entry_shape_and_sensitive_keys() -> None:
    queue, _ = make_queue()
    queue.put(item(3, "p", {"client_id": "c", "auth_token_comfy_org": "secret", "api_key_comfy_org": "k"}))
    got = queue.get(timeout_s=0)
    assert got is not None
    queue.task_done(got[1], {"outputs": {"9": {"images": []}}, "meta": {}}, ExecutionStatus("error", False, []))
    entry = queue.history_item("p")["p"]
    assert entry["prompt"] == [3, "p", {"1": {}}, {"client_id": "c"}, ["1"]]
    assert entry["status"] == {"status_str": "error", "completed": False, "messages": []}
    assert list(entry) == ["prompt", "outputs", "status", "meta"]


def test_history_delete_and_clear() -> None:
    queue, _ = make_queue()
    for index in range(3):
        finish(queue, f"h{index}")
    queue.delete_history("h1")
    queue.delete_history(["unhashable"])
    assert list(queue.history()) == ["h0", "h2"]
    queue.wipe_history()
    assert queue.history() == {}


def test_history_keeps_the_newest_entries() -> None:
    queue, _ = make_queue()
    for index in range(MAX_HISTORY_ITEMS + 5):
        finish(queue, f"h{index}")
    history = queue.history()
    # ComfyUI drops the oldest only once it holds more than the maximum, so it settles one above it.
    assert len(history) == MAX_HISTORY_ITEMS + 1
    assert next(iter(history)) == "h4"


def test_get_times_out_when_empty_and_flags_are_taken_once() -> None:
    queue, _ = make_queue()
    assert queue.get(timeout_s=0.01) is None
    queue.set_flag("free_memory", True)
    assert queue.take_flags() == {"free_memory": True}
    assert queue.take_flags() == {}
