"""POST /prompt: the accepted shape, ids and numbering, every rejection type, partial acceptance, coercions."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.contract import versions
from tests.contract.graphs import empty_image, make_invert_graph, unique_token
from tests.contract.harness import Target, post_prompt, queue_prompt, wait_history

SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"


def graph_with(node_id: str, node: dict[str, Any]) -> dict[str, Any]:
    graph = make_invert_graph("contract_bad_" + unique_token())
    graph[node_id] = node
    return graph


def empty_with(**inputs: Any) -> dict[str, Any]:
    """An EmptyImage node with inputs replaced (None drops an input)."""
    merged = {**empty_image(64, 48, 1)["inputs"], **inputs}
    return {"class_type": "EmptyImage", "inputs": {key: value for key, value in merged.items() if value is not None}}


SCALE_MAGIC: dict[str, Any] = {
    "class_type": "ImageScale",
    "inputs": {"image": ["1", 0], "upscale_method": "magic", "width": 32, "height": 32, "crop": "center"},
}
MASK_INTO_IMAGE = {
    "1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "contract_mismatch"}},
}


@dataclass(frozen=True)
class NodeErrorCase:
    """A graph rejected with prompt_outputs_failed_validation and one node error."""

    graph: dict[str, Any]
    node_id: str
    class_type: str
    error_type: str
    message: str
    details: str
    extra_info: dict[str, Any] = field(default_factory=dict)
    extra_keys: frozenset[str] = frozenset()
    dependent_outputs: tuple[str, ...] = ("3",)


INNER = frozenset({"input_name", "input_config", "exception_message", "exception_type", "traceback", "linked_node"})
NODE_ERROR_CASES = {
    "required_input_missing": NodeErrorCase(
        graph_with("2", {"class_type": "ImageInvert", "inputs": {}}), "2", "ImageInvert",
        "required_input_missing", "Required input is missing", "image", {"input_name": "image"}),
    "required_widget_missing": NodeErrorCase(
        graph_with("1", empty_with(width=None)), "1", "EmptyImage",
        "required_input_missing", "Required input is missing", "width", {"input_name": "width"}),
    "invalid_input_type": NodeErrorCase(
        graph_with("1", empty_with(width="abc")), "1", "EmptyImage",
        "invalid_input_type", "Failed to convert an input value to a INT value",
        "width, abc, invalid literal for int() with base 10: 'abc'",
        {"input_name": "width", "received_value": "abc",
         "exception_message": "invalid literal for int() with base 10: 'abc'"}, frozenset({"input_config"})),
    "value_smaller_than_min": NodeErrorCase(
        graph_with("1", empty_with(width=0)), "1", "EmptyImage",
        "value_smaller_than_min", "Value 0 smaller than min of 1", "width",
        {"input_name": "width", "received_value": 0}, frozenset({"input_config"})),
    "value_bigger_than_max": NodeErrorCase(
        graph_with("1", empty_with(width=99999)), "1", "EmptyImage",
        "value_bigger_than_max", "Value 99999 bigger than max of 16384", "width",
        {"input_name": "width", "received_value": 99999}, frozenset({"input_config"})),
    "value_not_in_list": NodeErrorCase(
        graph_with("2", SCALE_MAGIC), "2", "ImageScale", "value_not_in_list", "Value not in list",
        "upscale_method: 'magic' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        {"input_name": "upscale_method", "received_value": "magic"}, frozenset({"input_config"})),
    "custom_validation_failed": NodeErrorCase(
        graph_with("1", {"class_type": "LoadImage", "inputs": {"image": "contract_no_such_file.png"}}), "1",
        "LoadImage", "custom_validation_failed", "Custom validation failed for node",
        "image - Invalid image file: contract_no_such_file.png", {"input_name": "image"}),
    "link_to_missing_node": NodeErrorCase(
        graph_with("2", {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}}), "2", "ImageInvert",
        "exception_during_inner_validation", "Exception when validating inner node", "'99'",
        {"input_name": "images", "exception_message": "'99'", "exception_type": "KeyError",
         "linked_node": ["2", 0]}, INNER),
    "link_index_out_of_range": NodeErrorCase(
        graph_with("2", {"class_type": "ImageInvert", "inputs": {"image": ["1", 5]}}), "2", "ImageInvert",
        "exception_during_inner_validation", "Exception when validating inner node", "tuple index out of range",
        {"input_name": "images", "exception_type": "IndexError", "linked_node": ["2", 0]}, INNER),
    "link_with_int_node_id": NodeErrorCase(
        graph_with("2", {"class_type": "ImageInvert", "inputs": {"image": [1, 0]}}), "2", "ImageInvert",
        "exception_during_inner_validation", "Exception when validating inner node", "1",
        {"input_name": "images", "exception_type": "KeyError", "linked_node": ["2", 0]}, INNER),
    "node_without_inputs": NodeErrorCase(
        graph_with("2", {"class_type": "ImageInvert"}), "2", "ImageInvert",
        "exception_during_inner_validation", "Exception when validating inner node", "'inputs'",
        {"input_name": "images", "exception_type": "KeyError", "linked_node": ["2", 0]}, INNER),
    "float_below_min": NodeErrorCase(
        {"1": {"class_type": "SolidMask", "inputs": {"value": -1, "width": 8, "height": 8}},
         "2": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 0]}},
         "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "contract_float"}}},
        "1", "SolidMask", "value_smaller_than_min", "Value -1.0 smaller than min of 0.0", "value",
        {"input_name": "value", "received_value": -1.0}, frozenset({"input_config"})),
    "bad_linked_input": NodeErrorCase(
        graph_with("1", empty_with(width=[1, 2, 3])), "1", "EmptyImage", "bad_linked_input",
        "Bad linked input, must be a length-2 list of [node_id, slot_index]", "width",
        {"input_name": "width", "received_value": [1, 2, 3]}, frozenset({"input_config"})),
    "number_for_combo": NodeErrorCase(
        graph_with("2", {**SCALE_MAGIC, "inputs": {**SCALE_MAGIC["inputs"], "upscale_method": 5}}), "2",
        "ImageScale", "value_not_in_list", "Value not in list",
        "upscale_method: '5' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        {"input_name": "upscale_method", "received_value": 5}, frozenset({"input_config"})),
    "return_type_mismatch": NodeErrorCase(
        MASK_INTO_IMAGE, "2", "SaveImage", "return_type_mismatch", "Return type mismatch between linked nodes",
        "images, received_type(MASK) mismatch input_type(IMAGE)",
        {"input_name": "images", "received_type": "MASK", "linked_node": ["1", 0]}, frozenset({"input_config"}),
        ("2",)),
}  # fmt: skip


@pytest.mark.parametrize("case_name", list(NODE_ERROR_CASES))
async def test_node_error_bodies(http: httpx.AsyncClient, target: Target, case_name: str) -> None:
    case = NODE_ERROR_CASES[case_name]
    if case_name == "number_for_combo" and target.at_least(versions.MODERN):
        # 0.33 shows the received value with repr(): 5, not '5'
        case = dataclasses.replace(case, details=case.details.replace("'5'", "5"))
    response = await post_prompt(http, case.graph)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"error", "node_errors"}
    error = body["error"]
    assert error["type"] == "prompt_outputs_failed_validation"
    assert error["message"] == "Prompt outputs failed validation"
    # Only a type mismatch repeats its reason in the top-level details.
    expected_details = f"{case.message}: {case.details}" if case.error_type == "return_type_mismatch" else ""
    assert error["details"] == expected_details
    assert error["extra_info"] == {}
    assert list(body["node_errors"]) == [case.node_id]
    entry = body["node_errors"][case.node_id]
    assert set(entry) == {"errors", "dependent_outputs", "class_type"}
    assert entry["class_type"] == case.class_type
    assert entry["dependent_outputs"] == list(case.dependent_outputs)
    [node_error] = entry["errors"]
    assert set(node_error) == {"type", "message", "details", "extra_info"}
    assert (node_error["type"], node_error["message"], node_error["details"]) == (
        case.error_type, case.message, case.details)  # fmt: skip
    extra = node_error["extra_info"]
    assert set(extra) == set(case.extra_info) | case.extra_keys
    assert {key: extra[key] for key in case.extra_info} == case.extra_info
    if "input_config" in extra:
        assert isinstance(extra["input_config"], list) and len(extra["input_config"]) == 2
    if "traceback" in extra:
        assert isinstance(extra["traceback"], list) and all(isinstance(line, str) for line in extra["traceback"])


def top_level_error(body: dict[str, Any]) -> tuple[str, str, str]:
    assert set(body) == {"error", "node_errors"}
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    assert body["error"]["extra_info"] == {}
    assert body["node_errors"] == {}
    return body["error"]["type"], body["error"]["message"], body["error"]["details"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"prompt": {"1": empty_image()}}, ("prompt_no_outputs", "Prompt has no outputs", "")),
        ({"prompt": {}}, ("prompt_no_outputs", "Prompt has no outputs", "")),
        ({"client_id": "x"}, ("no_prompt", "No prompt provided", "No prompt provided")),
        ([1, 2], ("no_prompt", "No prompt provided", "No prompt provided")),
    ],
    ids=["no_output_node", "empty_prompt", "no_prompt_key", "array_body"],
)  # fmt: skip
async def test_prompt_level_errors(http: httpx.AsyncClient, payload: Any, expected: tuple[str, str, str]) -> None:
    response = await http.post("/prompt", json=payload)
    assert response.status_code == 400, response.text
    assert top_level_error(response.json()) == expected


@pytest.mark.parametrize(
    ("node", "old_message", "new_message", "title"),
    [
        ({"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}},
         "Cannot execute because node NoSuchNode does not exist.",
         "Node 'NoSuchNode' not found. The custom node may not be installed.", None),
        ({"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}, "_meta": {"title": "My node"}},
         "Cannot execute because node NoSuchNode does not exist.",
         "Node 'My node' not found. The custom node may not be installed.", "My node"),
        ({"inputs": {"image": ["1", 0]}},
         "Cannot execute because a node is missing the class_type property.",
         "Node 'ID #2' has no class_type. The workflow may be corrupted or a custom node is missing.", None),
    ],
    ids=["unknown_class_type", "unknown_class_type_with_title", "missing_class_type"],
)  # fmt: skip
async def test_node_type_errors(
    http: httpx.AsyncClient, target: Target, node: dict[str, Any], old_message: str, new_message: str,
    title: str | None,
) -> None:  # fmt: skip
    response = await http.post("/prompt", json={"prompt": graph_with("2", node)})
    assert response.status_code == 400, response.text
    body = response.json()
    if not target.at_least(versions.MISSING_NODE_TYPE):
        assert top_level_error(body) == ("invalid_prompt", old_message, "Node ID '#2'")
        return
    assert set(body) == {"error", "node_errors"} and body["node_errors"] == {}
    error = body["error"]
    assert (error["type"], error["message"], error["details"]) == ("missing_node_type", new_message, "Node ID '#2'")
    assert error["extra_info"] == {"node_id": "2", "class_type": node.get("class_type"), "node_title": title}


async def test_cycle_is_rejected(http: httpx.AsyncClient, target: Target) -> None:
    """0.3.64 fails a cycle without node errors; newer ComfyUI names every node on the loop."""
    graph = {
        "1": empty_image(8, 8, 0),
        "2": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["3", 0], "blend_factor": 0.5,
                                                      "blend_mode": "normal"}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "contract_cycle"}},
    }  # fmt: skip
    response = await post_prompt(http, graph)
    assert response.status_code == 400
    body = response.json()
    if not target.at_least(versions.CYCLE_NODE_ERRORS):
        assert top_level_error(body) == ("prompt_outputs_failed_validation", "Prompt outputs failed validation", "")
        return
    assert body["error"] == {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                             "details": "", "extra_info": {}}  # fmt: skip
    assert set(body["node_errors"]) == {"2", "3"}
    for node_id, entry in body["node_errors"].items():
        [error] = entry["errors"]
        assert (error["type"], error["message"]) == ("dependency_cycle", "Dependency cycle detected")
        assert error["extra_info"]["node_id"] == node_id
        assert sorted(error["extra_info"]["cycle_nodes"]) == ["2", "3"]
        assert "(ImageBlend)" in error["details"] and "(ImageInvert)" in error["details"]
        assert entry["dependent_outputs"] == ["4"]


@pytest.mark.parametrize(
    ("content", "json_body"),
    [(b"{not json", None), (b"", None)],
    ids=["malformed_json", "empty_body"],
)
async def test_unparseable_bodies_are_text_500(http: httpx.AsyncClient, content: bytes | None, json_body: Any) -> None:
    response = await http.post("/prompt", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == SERVER_TROUBLE


async def test_a_prompt_that_is_a_list(http: httpx.AsyncClient, target: Target) -> None:
    """A list of ids is a text 500 on every version; an empty list is a 400 prompt_no_outputs on 0.3.64 and a text
    500 on 0.33 (node replacements run on the prompt first)."""
    for prompt in ([1, 2], []):
        response = await http.post("/prompt", json={"prompt": prompt})
        if prompt or target.at_least(versions.MODERN):
            assert response.status_code == 500, prompt
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert response.text == SERVER_TROUBLE
        else:
            assert response.status_code == 400
            assert top_level_error(response.json()) == ("prompt_no_outputs", "Prompt has no outputs", "")


@pytest.mark.parametrize(
    "prompt_id",
    ["my-own-id-1", "warmup-0123abcd", "12345", "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
     "3f2504e04f8941d39a0c0305e82c3301"],
)  # fmt: skip
async def test_a_prompt_id_that_is_not_a_canonical_uuid(
    http: httpx.AsyncClient, target: Target, prompt_id: str
) -> None:
    """0.3.64 keeps any id verbatim; since ~0.25 it is a 400 invalid_prompt_id, checked before the graph."""
    graph = {"1": {"class_type": "NoSuchNode", "inputs": {}}} if target.at_least(versions.UUID_PROMPT_IDS) else None
    response = await post_prompt(
        http, graph or make_invert_graph("contract_pid_" + unique_token()), prompt_id=prompt_id
    )
    if not target.at_least(versions.UUID_PROMPT_IDS):
        assert response.status_code == 200 and response.json()["prompt_id"] == prompt_id
        await wait_history(http, prompt_id)
        return
    assert response.status_code == 400
    body = response.json()
    assert body["node_errors"] == {}
    assert (body["error"]["type"], body["error"]["message"]) == ("invalid_prompt_id", "prompt_id must be a valid UUID")
    assert body["error"]["extra_info"] == {}


async def test_a_null_prompt_id(http: httpx.AsyncClient, target: Target) -> None:
    """`prompt_id: null` is the string "None" on 0.3.64, a fresh uuid4 since ~0.25."""
    response = await post_prompt(http, make_invert_graph("contract_null_" + unique_token()), prompt_id=None)
    assert response.status_code == 200
    prompt_id = response.json()["prompt_id"]
    if target.at_least(versions.UUID_PROMPT_IDS):
        assert uuid.UUID(prompt_id).version == 4
    else:
        assert prompt_id == "None"
    await wait_history(http, prompt_id)


async def test_number_counts_every_post_and_front_negates(http: httpx.AsyncClient) -> None:
    first = (await post_prompt(http, make_invert_graph("contract_n_" + unique_token()))).json()["number"]
    rejected = await post_prompt(http, {"1": empty_image()})
    assert rejected.status_code == 400
    second = (await post_prompt(http, make_invert_graph("contract_n_" + unique_token()))).json()["number"]
    assert second == first + 2, "the counter also advances on a rejected POST"
    front = (await post_prompt(http, make_invert_graph("contract_n_" + unique_token()), front=True)).json()
    assert front["number"] == -(second + 1)
    chosen = (await post_prompt(http, make_invert_graph("contract_n_" + unique_token()), number=7.5)).json()
    assert chosen["number"] == 7.5
    await wait_history(http, chosen["prompt_id"])


async def test_partial_acceptance_runs_only_the_valid_output(http: httpx.AsyncClient) -> None:
    prefix = "contract_partial_" + unique_token()
    graph = make_invert_graph(prefix)
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": prefix + "_bad"}}
    response = await post_prompt(http, graph)
    assert response.status_code == 200
    body = response.json()
    assert list(body["node_errors"]) == ["4"]
    entry = body["node_errors"]["4"]
    assert entry["class_type"] == "SaveImage" and entry["dependent_outputs"] == ["4"]
    [node_error] = entry["errors"]
    assert (node_error["type"], node_error["message"], node_error["details"]) == (
        "exception_during_validation", "Exception when validating node", "'99'")  # fmt: skip
    assert set(node_error["extra_info"]) == {"exception_type", "traceback"}
    assert node_error["extra_info"]["exception_type"] == "KeyError"
    history = await wait_history(http, body["prompt_id"])
    assert history["prompt"][4] == ["3"]
    assert list(history["outputs"]) == ["3"]
    assert history["status"]["status_str"] == "success"


@pytest.mark.parametrize("width", ["64", 64.7], ids=["numeric_string", "float"])
async def test_int_coercions_are_accepted(http: httpx.AsyncClient, width: Any) -> None:
    graph = make_invert_graph("contract_coerce_" + unique_token())
    graph["1"]["inputs"]["width"] = width
    prompt_id = await queue_prompt(http, graph)
    entry = await wait_history(http, prompt_id)
    assert entry["status"]["status_str"] == "success"
    recorded = entry["prompt"][2]["1"]["inputs"]["width"]
    assert recorded == 64 and isinstance(recorded, int), "validation writes the coerced value into the graph"


async def test_string_where_a_link_belongs_fails_at_run_time(http: httpx.AsyncClient) -> None:
    graph = make_invert_graph("contract_strlink_" + unique_token())
    graph["2"]["inputs"]["image"] = "1"
    prompt_id = await queue_prompt(http, graph)
    entry = await wait_history(http, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == {}
    error = dict(entry["status"]["messages"])["execution_error"]
    assert (error["node_id"], error["node_type"], error["exception_type"]) == ("2", "ImageInvert", "TypeError")


async def test_partial_execution_targets_restrict_the_outputs(http: httpx.AsyncClient) -> None:
    prefix = "contract_targets_" + unique_token()
    graph = make_invert_graph(prefix)
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix + "_plain"}}
    prompt_id = await queue_prompt(http, graph, partial_execution_targets=["4"])
    entry = await wait_history(http, prompt_id)
    assert entry["prompt"][4] == ["4"]
    assert entry["outputs"] == {"4": {"images": [{"filename": f"{prefix}_plain_00001_.png", "subfolder": "",
                                                 "type": "output"}]}}  # fmt: skip


async def test_explicit_number_is_a_float_and_does_not_advance_the_counter(http: httpx.AsyncClient) -> None:
    def graph() -> dict[str, Any]:
        return make_invert_graph("contract_num_" + unique_token())

    first = (await post_prompt(http, graph())).json()["number"]
    given = (await post_prompt(http, graph(), number="3")).json()
    assert given["number"] == 3.0 and isinstance(given["number"], float)
    with_front = (await post_prompt(http, graph(), number=5, front=True)).json()
    assert with_front["number"] == 5.0, "an explicit number wins over front"
    back = (await post_prompt(http, graph(), front=False)).json()
    assert back["number"] == first + 1, "only POSTs without a number use (and advance) the counter"
    await wait_history(http, back["prompt_id"])


async def test_non_string_prompt_id_is_stringified(http: httpx.AsyncClient, target: Target) -> None:
    chosen = int(unique_token(), 16)
    response = await post_prompt(http, make_invert_graph("contract_intid_" + unique_token()), prompt_id=chosen)
    if target.at_least(versions.UUID_PROMPT_IDS):
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_prompt_id"
        return
    assert response.status_code == 200 and response.json()["prompt_id"] == str(chosen)
    assert (await wait_history(http, str(chosen)))["prompt"][1] == str(chosen)


async def test_partial_execution_targets_without_outputs_is_prompt_no_outputs(http: httpx.AsyncClient) -> None:
    graph = make_invert_graph("contract_notarget_" + unique_token())
    for targets in (["99"], ["2"], []):
        response = await post_prompt(http, graph, partial_execution_targets=targets)
        assert response.status_code == 400, targets
        assert top_level_error(response.json()) == ("prompt_no_outputs", "Prompt has no outputs", "")
