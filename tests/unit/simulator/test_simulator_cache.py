"""The execution cache: keys from input signatures, reuse across prompts, eviction of what a prompt does not use."""

from __future__ import annotations

import copy
from typing import Any

from comfyui_api.simulator.cache import ExecutionCache, to_hashable
from tests.unit.simulator.simulator_support import invert_graph


def keyed(cache: ExecutionCache, prompt: dict[str, Any], changed: dict[str, Any] | None = None) -> ExecutionCache:
    values = changed or {}
    cache.set_prompt(prompt, lambda node_id: values.get(node_id, False), set())
    return cache


def fill(cache: ExecutionCache, prompt: dict[str, Any]) -> None:
    for node_id in prompt:
        cache.set_output(node_id, [[node_id]])


def test_identical_prompt_finds_every_output() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"))
    fill(cache, invert_graph("a"))
    keyed(cache, invert_graph("a"))
    assert [cache.output(n) for n in ("1", "2", "3")] == [[["1"]], [["2"]], [["3"]]]


def test_changed_literal_invalidates_only_that_node_and_its_descendants() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"))
    fill(cache, invert_graph("a"))
    keyed(cache, invert_graph("b"))  # only the SaveImage prefix changed
    assert [cache.output(n) is not None for n in ("1", "2", "3")] == [True, True, False]
    keyed(cache, invert_graph("b", color=1))  # the source changed: everything downstream too
    assert [cache.output(n) is not None for n in ("1", "2", "3")] == [False, False, False]


def test_node_ids_do_not_matter_only_structure() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"))
    fill(cache, invert_graph("a"))
    renumbered = {"10": copy.deepcopy(invert_graph("a")["1"]), "20": {"class_type": "ImageInvert",
                  "inputs": {"image": ["10", 0]}}}  # fmt: skip
    keyed(cache, renumbered)
    assert cache.output("10") is not None and cache.output("20") is not None


def test_entries_unused_by_the_next_prompt_are_dropped() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"))
    fill(cache, invert_graph("a"))
    keyed(cache, invert_graph("a", color=5))
    keyed(cache, invert_graph("a"))
    assert cache.output("1") is None


def test_is_changed_values_take_part_in_the_key() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"), {"1": ["digest-1"]})
    fill(cache, invert_graph("a"))
    keyed(cache, invert_graph("a"), {"1": ["digest-1"]})
    assert cache.output("3") is not None
    keyed(cache, invert_graph("a"), {"1": ["digest-2"]})
    assert cache.output("1") is None and cache.output("3") is None


def test_node_state_lives_while_the_node_stays() -> None:
    cache = keyed(ExecutionCache(), invert_graph("a"))
    cache.state("3", "SaveImage")["suffix"] = "_temp_abcde"
    keyed(cache, invert_graph("b"))
    assert cache.state("3", "SaveImage") == {"suffix": "_temp_abcde"}
    keyed(cache, {"9": {"class_type": "EmptyImage", "inputs": {}}})
    assert cache.state("3", "SaveImage") == {}


def test_unhashable_values_never_match() -> None:
    assert to_hashable({"a": [1, 2]}) == to_hashable({"a": (1, 2)})
    assert to_hashable(object()) != to_hashable(object())
