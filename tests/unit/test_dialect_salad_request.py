"""dialects/salad_request.py: the edge checks of a POST /prompt body, each a 400 naming its field."""

from __future__ import annotations

import pytest

from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.dialects.salad_request import accepted_body, check_graph, to_job_request
from comfyui_api.errors import InvalidRequest
from comfyui_api.settings import JobSettings

NODE = {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}


def refused(graph: dict, **kwargs: int) -> str | None:
    with pytest.raises(InvalidRequest) as error:
        check_graph(graph, **kwargs)
    return error.value.field


def test_graph_bounds_name_the_field() -> None:
    assert refused({str(i): NODE for i in range(11)}, max_nodes=10) == "prompt"
    deep: list = []
    cursor = deep
    for _ in range(40):
        cursor.append([])
        cursor = cursor[0]
    assert refused({"1": {"class_type": "X", "inputs": {"deep": deep}}}) == "prompt.1.inputs.deep"
    shallow = {"1": {"class_type": "X", "inputs": {"list": [[1, 2], [3, [4]]], "link": ["2", 0]}}}
    check_graph(shallow)  # ordinary values pass


def test_max_graph_nodes_comes_from_the_settings() -> None:
    body = PromptRequest(prompt={str(i): NODE for i in range(3)})
    with pytest.raises(InvalidRequest):
        to_job_request(body, JobSettings(max_graph_nodes=2))
    assert to_job_request(body, JobSettings(max_graph_nodes=3)).graph == body.prompt


def test_the_202_echoes_the_request_without_credentials() -> None:
    body = PromptRequest(prompt={"1": NODE}, id="x", credentials=[{"url_pattern": "*", "auth": {"type": "bearer"}}])
    answer = accepted_body(body, "/jobs/x")
    assert answer["status"] == "ok" and answer["job"] == "/jobs/x" and "credentials" not in answer
