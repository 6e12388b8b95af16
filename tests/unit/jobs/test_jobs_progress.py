"""Overall progress: samplers weigh their steps, cached nodes count as done, the percentage never decreases."""

from __future__ import annotations

from comfyui_api.jobs.progress import ProgressTracker, node_weight

GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
    "2": {"class_type": "EmptyLatentImage", "inputs": {}},
    "3": {"class_type": "KSampler", "inputs": {"steps": 6, "model": ["1", 0]}},
    "4": {"class_type": "VAEDecode", "inputs": {}},
    "5": {"class_type": "SaveImage", "inputs": {}},
}  # total weight 4 + 6 = 10


def test_weights() -> None:
    assert node_weight(GRAPH["3"]) == 6
    assert node_weight({"inputs": {"steps": ["7", 0]}}) == 1
    assert node_weight({"inputs": {"steps": True}}) == 1
    assert node_weight("not a node") == 1


def test_samplers_dominate_and_steps_move_the_needle() -> None:
    tracker = ProgressTracker(GRAPH)
    assert tracker.executing("1") == 0
    assert tracker.executing("2") == 10
    assert tracker.executing("3") == 20
    assert tracker.step("3", 3, 6) == 50
    assert tracker.step("3", 6, 6) == 80
    assert tracker.executing("4") == 80
    assert tracker.executing("5") == 90
    assert tracker.finished() == 100


def test_cached_nodes_count_as_done() -> None:
    tracker = ProgressTracker(GRAPH)
    assert tracker.cached(["1", "2", "3", "unknown"]) == 80


def test_never_decreases() -> None:
    tracker = ProgressTracker(GRAPH)
    tracker.executing("3")
    assert tracker.step("3", 5, 6) == 50
    assert tracker.step("3", 1, 6) == 50  # a second sampler pass restarts its count
    assert tracker.executing("3") == 60  # re-entering a node: the previous run counts as done
    assert tracker.percent == 60


def test_steps_of_a_node_seen_only_through_progress() -> None:
    tracker = ProgressTracker(GRAPH)
    assert tracker.step("3", 3, 6) == 30
    assert tracker.step(None, 6, 6) == 60


def test_empty_graph() -> None:
    tracker = ProgressTracker({})
    assert tracker.percent == 0
    assert tracker.finished() == 100
