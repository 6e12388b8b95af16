"""JobEventLog: numbered events, replay from any point, any number of live followers, bounded without losing a
milestone, and a slow reader never holding up the job."""

from __future__ import annotations

import asyncio
from pathlib import Path

from comfyui_api.errors import JobCancelled
from comfyui_api.jobs.broker import JobEventLog, SequencedEvent
from comfyui_api.jobs.model import (
    JobCompleted,
    JobFailed,
    JobQueued,
    JobResult,
    JobStarted,
    NodeExecuting,
    NodeStates,
    OutputFile,
    OutputReady,
    PreviewProduced,
    ProgressUpdated,
    Stats,
)

JOB = "job-b"


def result() -> JobResult:
    return JobResult(JOB, {}, [], [], Stats())


def output(name: str) -> OutputFile:
    return OutputFile("9", "image", name, "", "output", "image/png", 1, path=Path("/nowhere") / name)


def progress(percent: float) -> ProgressUpdated:
    return ProgressUpdated(JOB, "3", percent, 100, percent)


async def read_all(log: JobEventLog, after_seq: int = 0) -> list[SequencedEvent]:
    return [item async for item in log.follow(after_seq) if item is not None]


async def test_events_are_numbered_and_replayed_to_a_reader_that_comes_after_the_end() -> None:
    log = JobEventLog(JOB)
    for event in (JobQueued(JOB, 0), JobStarted(JOB), progress(50), JobCompleted(JOB, result())):
        log.publish(event)
    log.publish(progress(99))  # after the end: ignored
    items = await read_all(log)
    assert [item.seq for item in items] == [1, 2, 3, 4]
    assert isinstance(items[-1].event, JobCompleted)
    assert log.ended and log.last_seq == 4


async def test_a_reader_resumes_after_the_last_event_it_saw() -> None:
    log = JobEventLog(JOB)
    for event in (JobStarted(JOB), progress(10), progress(20), JobCompleted(JOB, result())):
        log.publish(event)
    assert [item.seq for item in await read_all(log, after_seq=2)] == [3, 4]
    assert await read_all(log, after_seq=4) == []


async def test_many_followers_each_get_every_event_live() -> None:
    log = JobEventLog(JOB)
    readers = [asyncio.create_task(read_all(log)) for _ in range(50)]
    await asyncio.sleep(0)
    for percent in range(10):
        log.publish(progress(percent))
        await asyncio.sleep(0)
    log.publish(JobCompleted(JOB, result()))
    seen = await asyncio.wait_for(asyncio.gather(*readers), timeout=5)
    assert all([item.seq for item in items] == list(range(1, 12)) for items in seen)


async def test_a_follower_joining_mid_job_gets_the_story_so_far_then_the_rest() -> None:
    log = JobEventLog(JOB)
    log.publish(JobStarted(JOB))
    log.publish(progress(30))
    late = asyncio.create_task(read_all(log))
    await asyncio.sleep(0)
    log.publish(JobFailed(JOB, JobCancelled("stopped")))
    items = await asyncio.wait_for(late, timeout=5)
    assert [type(item.event).__name__ for item in items] == ["JobStarted", "ProgressUpdated", "JobFailed"]


async def test_heartbeats_while_nothing_happens() -> None:
    log = JobEventLog(JOB)
    follow = log.follow(heartbeat_s=0.01)
    assert await anext(follow) is None
    log.publish(JobStarted(JOB))
    item = await anext(follow)
    assert item is not None and item.seq == 1


async def test_the_bound_drops_progress_and_old_previews_never_milestones() -> None:
    log = JobEventLog(JOB, max_events=10, max_previews=2)
    log.publish(JobStarted(JOB))
    for step in range(100):
        log.publish(progress(step))
        log.publish(NodeExecuting(JOB, str(step), "X"))
    for name in ("a.png", "b.png", "c.png"):
        log.publish(OutputReady(JOB, output(name)))
    for step in range(5):
        log.publish(PreviewProduced(JOB, "3", "image/png", bytes([step])))
    log.publish(JobCompleted(JOB, result()))
    kept = log.replay()
    kinds = [type(item.event).__name__ for item in kept]
    assert kinds[0] == "JobStarted" and kinds[-1] == "JobCompleted"
    assert [i.event.output.filename for i in kept if isinstance(i.event, OutputReady)] == ["a.png", "b.png", "c.png"]
    assert [i.event.data for i in kept if isinstance(i.event, PreviewProduced)] == [b"\x03", b"\x04"]
    assert len(kept) <= 10
    seqs = [item.seq for item in kept]
    assert seqs == sorted(seqs) and seqs[-1] == log.last_seq


async def test_a_reader_that_stops_reading_does_not_hold_up_publishing() -> None:
    log = JobEventLog(JOB, max_events=64)
    log.publish(JobStarted(JOB))
    stalled = log.follow()
    first = await anext(stalled)
    assert first is not None and first.seq == 1
    for step in range(10_000):  # the reader reads nothing meanwhile
        log.publish(progress(step % 100))
    log.publish(JobCompleted(JOB, result()))
    assert log.ended and log.last_seq == 10_002
    rest = [item async for item in stalled if item is not None]  # it skipped what the bound dropped
    assert len(rest) <= 64 and rest[-1].seq == 10_002 and isinstance(rest[-1].event, JobCompleted)


async def test_a_reader_gets_what_came_while_it_was_away_as_one_batch() -> None:
    log = JobEventLog(JOB)
    log.publish(JobStarted(JOB))
    batches = log.follow_batches()
    assert [item.seq for item in await anext(batches) or []] == [1]
    for percent in (10, 20, 30):  # a burst while the reader was busy writing
        log.publish(progress(percent))
    assert [item.seq for item in await anext(batches) or []] == [2, 3, 4]
    log.publish(JobCompleted(JOB, result()))
    assert [item.seq for item in await anext(batches) or []] == [5]
    assert [batch async for batch in batches] == [], "the batch with the terminal event is the last"


async def test_the_terminal_events_bytes_are_let_go_when_its_last_reader_is_done() -> None:
    log = JobEventLog(JOB)
    first, second = log.follow_batches(), log.follow_batches()
    log.publish(JobCompleted(JOB, result()))
    terminal = (await anext(first) or [])[-1]
    assert (await anext(second) or [])[-1] is terminal
    terminal.encoded = b"id: 1\nevent: complete\ndata: {}\n\n"  # what the first reader built, for the others
    await first.aclose()
    assert terminal.encoded is not None, "another reader is still on it"
    await second.aclose()
    assert terminal.encoded is None, "no reader left: the bytes (maybe megabytes of outputs) are not kept"


async def test_per_node_state_wakes_no_reader_and_goes_out_with_the_next_event() -> None:
    log = JobEventLog(JOB)
    log.publish(JobStarted(JOB))
    batches = log.follow_batches()
    assert [item.seq for item in await anext(batches) or []] == [1]
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0)
    log.publish(NodeStates(JOB, {"3": {"value": 1, "max": 4, "state": "running"}}))
    await asyncio.sleep(0.01)
    assert not waiting.done(), "ComfyUI's per-node state alone wakes nobody"
    log.publish(progress(25))
    assert [type(item.event) for item in await asyncio.wait_for(waiting, 1) or []] == [NodeStates, ProgressUpdated]
    await batches.aclose()


async def test_only_the_newest_per_node_state_is_kept() -> None:
    log = JobEventLog(JOB)
    for step in range(1, 40):
        log.publish(NodeStates(JOB, {"3": {"value": step, "max": 40, "state": "running"}}))
        log.publish(progress(step * 2.5))
    kept = [item.event for item in log.replay() if isinstance(item.event, NodeStates)]
    assert [states.nodes["3"]["value"] for states in kept] == [39], "each snapshot supersedes the one before"
    assert len([item for item in log.replay() if isinstance(item.event, ProgressUpdated)]) == 39
