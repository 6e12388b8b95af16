"""Typing a declared input from the graph and a captured /object_info: kinds, choices, bounds, defaults, errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from msgspec import UNSET

from comfyui_api.workflows.declarations import DefinitionError, InputDeclaration, parse_target
from comfyui_api.workflows.inputs import resolve_input
from comfyui_api.workflows.workflow import InputKind, WorkflowInput
from tests.unit.workflows.factories import CAPTURED_CHECKPOINT, img2img_graph, object_info, txt2img_graph


def declare(*targets: str, **fields: Any) -> InputDeclaration:
    if "kind" in fields and isinstance(fields["kind"], str):
        fields["kind"] = InputKind(fields["kind"])
    if "enum" in fields:
        fields["enum"] = tuple(fields["enum"])
    return InputDeclaration(
        name=fields.pop("name", "x"), targets=tuple(parse_target(t) for t in targets), origin="inputs.x", **fields
    )


def resolve(declaration: InputDeclaration, graph: dict | None = None, info: Any = "captured", **kwargs: Any):
    return resolve_input(
        declaration,
        txt2img_graph() if graph is None else graph,
        object_info() if info == "captured" else info,
        **kwargs,
    )


def test_a_combo_becomes_an_enum_with_comfyuis_choices_and_the_graphs_value_as_default() -> None:
    spec = resolve(declare("3.inputs.scheduler"))

    assert spec.kind is InputKind.ENUM
    assert spec.options[:3] == ("simple", "sgm_uniform", "karras")
    assert (spec.default, spec.required) == ("normal", False)
    assert spec.description == "The scheduler controls how noise is gradually removed to form the image."


@pytest.mark.parametrize(
    ("target", "kind", "minimum", "maximum", "default"),
    [
        ("3.inputs.steps", InputKind.INTEGER, 1, 10000, 20),
        ("3.inputs.cfg", InputKind.NUMBER, 0.0, 100.0, 8.0),
        ("3.inputs.seed", InputKind.INTEGER, 0, 18446744073709551615, 5),
        ("5.inputs.width", InputKind.INTEGER, 16, 16384, 512),
        ("6.inputs.text", InputKind.STRING, None, None, "a cat"),
    ],
)
def test_kind_bounds_and_default_come_from_object_info_and_the_graph(
    target: str, kind: InputKind, minimum: Any, maximum: Any, default: Any
) -> None:
    graph = txt2img_graph()
    graph["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}

    spec = resolve(declare(target), graph)

    assert (spec.kind, spec.minimum, spec.maximum, spec.default, spec.required) == (
        kind,
        minimum,
        maximum,
        default,
        False,
    )


def test_declared_bounds_must_lie_within_what_comfyui_accepts() -> None:
    spec = resolve(declare("3.inputs.steps", minimum=5, maximum=50))
    assert (spec.minimum, spec.maximum) == (5, 50)

    with pytest.raises(
        DefinitionError, match=r"maximum 20000 is above 10000, the most ComfyUI accepts for 3\.inputs\.steps"
    ):
        resolve(declare("3.inputs.steps", maximum=20000))
    with pytest.raises(
        DefinitionError,
        match=r"minimum 0 is below 1, the least ComfyUI accepts for 3\.inputs\.steps \(KSampler input 'steps'\)",
    ):
        resolve(declare("3.inputs.steps", minimum=0))
    with pytest.raises(DefinitionError, match="minimum 50 is greater than maximum 10"):
        resolve(declare("3.inputs.steps", minimum=50, maximum=10))
    with pytest.raises(DefinitionError, match="apply to integer and number inputs, not string"):
        resolve(declare("6.inputs.text", minimum=1))


def test_the_default_checkpoint_wins_for_ckpt_name_when_comfyui_offers_it() -> None:
    graph = txt2img_graph()
    graph["4"]["inputs"]["ckpt_name"] = "not-installed.safetensors"

    with_default = resolve(declare("4.inputs.ckpt_name"), graph, default_checkpoint=CAPTURED_CHECKPOINT)
    not_offered = resolve(declare("4.inputs.ckpt_name"), graph, default_checkpoint="other.safetensors")

    assert (with_default.kind, with_default.options) == (InputKind.ENUM, (CAPTURED_CHECKPOINT,))
    assert (with_default.default, with_default.required) == (CAPTURED_CHECKPOINT, False)
    # Neither the warmup's checkpoint nor the graph's is installed: the caller has to choose.
    assert (not_offered.default, not_offered.required) == (UNSET, True)


def test_the_default_checkpoint_does_not_touch_other_inputs() -> None:
    spec = resolve(declare("3.inputs.sampler_name"), default_checkpoint=CAPTURED_CHECKPOINT)

    assert spec.default == "euler"


def test_declared_enum_lists_must_be_offered_by_comfyui() -> None:
    spec = resolve(declare("3.inputs.sampler_name", enum=["euler", "dpmpp_2m"]))
    assert (spec.options, spec.default) == (("euler", "dpmpp_2m"), "euler")

    with pytest.raises(
        DefinitionError, match=r"enum choice 'magic' is not offered by ComfyUI for 3\.inputs\.sampler_name"
    ):
        resolve(declare("3.inputs.sampler_name", enum=["euler", "magic"]))


def test_an_enum_list_may_restrict_integers() -> None:
    spec = resolve(declare("5.inputs.width", enum=[512, 768, 1024]))

    assert (spec.kind, spec.options, spec.default) == (InputKind.INTEGER, (512, 768, 1024), 512)
    with pytest.raises(DefinitionError, match="enum 'wide' must be an integer"):
        resolve(declare("5.inputs.width", enum=[512, "wide"]))


def test_a_combo_without_choices_is_a_load_error() -> None:
    info = object_info()
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = []

    with pytest.raises(DefinitionError, match=r"ComfyUI offers no choices for 4.inputs.ckpt_name .*installed"):
        resolve(declare("4.inputs.ckpt_name"), info=info)


@pytest.mark.parametrize(
    ("kind", "target", "expected_kind"),
    [
        ("integer", "3.inputs.cfg", InputKind.INTEGER),  # a FLOAT input accepts integers
        ("string", "3.inputs.sampler_name", InputKind.ENUM),  # ComfyUI accepts only the combo's choices
        ("image", "10.inputs.image", InputKind.IMAGE),
        ("enum", "10.inputs.image", InputKind.ENUM),  # choose among the uploaded files
    ],
)
def test_a_declared_type_may_narrow_what_comfyui_takes(kind: str, target: str, expected_kind: InputKind) -> None:
    spec = resolve(declare(target, kind=kind), img2img_graph())

    assert spec.kind is expected_kind


@pytest.mark.parametrize(
    ("target", "kind", "expected"),
    [
        (
            "6.inputs.text",
            "integer",
            "type integer does not fit 6.inputs.text (CLIPTextEncode input 'text'), which takes string",
        ),
        ("3.inputs.steps", "number", "type number does not fit 3.inputs.steps"),
        ("3.inputs.steps", "boolean", "does not fit"),
        ("6.inputs.text", "image", "type image needs an input that media staging knows"),
    ],
)
def test_a_declared_type_that_does_not_fit_is_a_load_error(target: str, kind: str, expected: str) -> None:
    with pytest.raises(DefinitionError, match=re.escape(expected)):
        resolve(declare(target, kind=kind))


def test_the_images_of_loadimage_are_media_and_required_when_the_graph_names_a_file() -> None:
    spec = resolve(declare("10.inputs.image"), img2img_graph())

    assert (spec.kind, spec.required, spec.default, spec.options) == (InputKind.IMAGE, True, UNSET, ())


def test_targets_on_inputs_that_are_links_or_missing_are_load_errors() -> None:
    graph = txt2img_graph()
    del graph["3"]["inputs"]["model"]

    with pytest.raises(DefinitionError, match=r"3\.inputs\.model: KSampler takes a MODEL link there"):
        resolve(declare("3.inputs.model"), graph)
    with pytest.raises(DefinitionError, match="that input is connected to node '4'"):
        resolve(declare("6.inputs.clip"))
    with pytest.raises(DefinitionError, match="the graph has no node '42'"):
        resolve(declare("42.inputs.text"))


def test_an_optional_input_comfyui_declares_may_be_targeted_even_when_the_graph_omits_it() -> None:
    graph = txt2img_graph()
    del graph["3"]["inputs"]["denoise"]

    spec = resolve(declare("3.inputs.denoise"), graph)

    assert (spec.kind, spec.minimum, spec.maximum, spec.default) == (InputKind.NUMBER, 0.0, 1.0, UNSET)
    assert spec.required is True  # no value anywhere to fall back on


def test_classes_unknown_to_comfyui_are_typed_from_the_graph() -> None:
    graph = {"1": {"class_type": "MyCustomNode", "inputs": {"strength": 0.5, "flag": True, "blob": None}}}

    assert resolve(declare("1.inputs.strength"), graph).kind is InputKind.NUMBER
    assert resolve(declare("1.inputs.flag"), graph).kind is InputKind.BOOLEAN
    assert resolve(declare("1.inputs.blob", kind="string"), graph).kind is InputKind.STRING
    with pytest.raises(DefinitionError, match=r"cannot tell the type of 1.inputs.blob .*; declare `type`"):
        resolve(declare("1.inputs.blob"), graph)
    with pytest.raises(DefinitionError, match="node 1 \\(MyCustomNode\\) has no input 'nope'"):
        resolve(declare("1.inputs.nope"), graph)


def test_without_object_info_everything_comes_from_the_graph() -> None:
    spec = resolve(declare("3.inputs.sampler_name"), info=None)

    assert (spec.kind, spec.options, spec.default, spec.description) == (InputKind.STRING, (), "euler", None)


def test_several_targets_must_agree_and_share_the_tightest_bounds() -> None:
    graph = txt2img_graph()
    graph["5"]["inputs"]["batch_size"] = 1

    spec = resolve(declare("5.inputs.width", "3.inputs.steps"), graph)
    assert (spec.minimum, spec.maximum) == (16, 10000)

    with pytest.raises(DefinitionError, match="targets take different types"):
        resolve(declare("5.inputs.width", "6.inputs.text"), graph)


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        (declare("3.inputs.steps", default=0), "default 0 must be at least 1, got 0"),
        (declare("3.inputs.sampler_name", default="magic"), "default 'magic' must be one of ['euler', "),
        (declare("3.inputs.steps", example="many"), "example 'many' must be an integer, got a string"),
        (declare("3.inputs.steps", required=True, default=3), "a required input cannot have a default"),
        (declare("6.inputs.text", randomize=True), "`randomize` applies to integer inputs only"),
        (declare("3.inputs.seed", randomize=True, default=3), "give either `default` or `randomize`, not both"),
        (declare("10.inputs.image", enum=["a.png"], kind="image"), "`enum` does not apply to type image"),
        (declare("6.inputs.text", kind="enum"), "type enum needs an `enum` list of choices"),
    ],
)
def test_inconsistent_declarations_are_load_errors(declaration: InputDeclaration, expected: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        resolve(declaration, img2img_graph())

    assert expected in str(caught.value)


def test_randomized_integers_are_optional_without_a_default() -> None:
    spec = resolve(declare("3.inputs.seed", randomize=True))

    assert (spec.required, spec.default, spec.randomize) == (False, UNSET, True)


def test_a_declared_required_input_drops_the_graphs_value_as_default() -> None:
    spec = resolve(declare("6.inputs.text", required=True, example="a fox"))

    assert spec == WorkflowInput(
        name="x",
        kind=InputKind.STRING,
        targets=(parse_target("6.inputs.text"),),
        required=True,
        description="The text to be encoded.",
        example="a fox",
    )
