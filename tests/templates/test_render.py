"""Placeholders, literal rendering, variable binding and parameter defaults: pure functions."""

from __future__ import annotations

import pytest

from server.errors import Unprocessable
from server.templates import defaults, slots
from tests.templates.stack import user_message
from tokenwire.chat.v1 import message_pb2, parameters_pb2
from tokenwire.templates.v1 import templates_pb2


def template(*variables: templates_pb2.TemplateVariable) -> templates_pb2.Template:
    return templates_pb2.Template(name="greet", variables=variables)


def var(name: str, default: str | None = None) -> templates_pb2.TemplateVariable:
    v = templates_pb2.TemplateVariable(name=name)
    if default is not None:
        v.default_value = default
    return v


@pytest.mark.parametrize(
    "value",
    [
        "{{other}}",
        "{{ name }}",
        r"\1 \g<0> \\",
        "%s %(name)s {0} ${name}",
        "}}{{",
        "{{{{name}}}}",
    ],
)
def test_values_are_never_expanded(value: str) -> None:
    text = "A {{name}} and {{other}}."
    out = slots.render_text(text, {"name": value, "other": "B"})
    assert out == f"A {value} and B."


def test_placeholders_allow_spaces_and_ignore_other_braces() -> None:
    text = "{{ name }}|{{name}}|{{ not a slot }}|{{1x}}|{name}|{{{name}}}"
    assert slots.render_text(text, {"name": "N"}) == "N|N|{{ not a slot }}|{{1x}}|{name}|{N}"
    assert slots.names_in([user_message(text)]) == ["name"]


def test_content_parts_are_rendered_and_the_original_kept() -> None:
    part = message_pb2.ContentPart(type=message_pb2.CONTENT_PART_TYPE_TEXT, text="Hi {{who}}")
    image = message_pb2.ContentPart(
        type=message_pb2.CONTENT_PART_TYPE_IMAGE_URL,
        image_url=message_pb2.ImageUrl(url="https://x/{{who}}.png"),
    )
    original = message_pb2.ChatMessage(
        role=message_pb2.ROLE_USER, content_parts=message_pb2.ContentParts(parts=[part, image])
    )
    rendered = slots.render(original, {"who": "Ada"})
    assert rendered.content_parts.parts[0].text == "Hi Ada"
    assert rendered.content_parts.parts[1].image_url.url == "https://x/{{who}}.png"
    assert original.content_parts.parts[0].text == "Hi {{who}}"


def test_bind_uses_defaults_and_given_values() -> None:
    t = template(var("who"), var("tone", "warm"))
    assert slots.bind(t, {"who": "Ada"}) == {"who": "Ada", "tone": "warm"}
    assert slots.bind(t, {"who": "Ada", "tone": ""}) == {"who": "Ada", "tone": ""}


def test_missing_variable_is_422_naming_it() -> None:
    with pytest.raises(Unprocessable) as caught:
        slots.bind(template(var("who"), var("tone", "warm")), {"tone": "dry"})
    assert caught.value.http_status == 422
    assert "'who'" in caught.value.message
    assert caught.value.param == "variables.who"
    assert caught.value.code == "missing_variable"


def test_undeclared_variable_is_422_naming_it() -> None:
    with pytest.raises(Unprocessable) as caught:
        slots.bind(template(var("who")), {"who": "Ada", "shoe": "x"})
    assert "'shoe'" in caught.value.message
    assert caught.value.param == "variables.shoe"
    assert caught.value.code == "undeclared_variable"


def request(**fields: object) -> parameters_pb2.GenerationParameters:
    return parameters_pb2.GenerationParameters(**fields)  # type: ignore[arg-type]


def test_request_parameters_override_template_defaults() -> None:
    r = request(temperature=0.0, stop=["END"])
    d = request(temperature=0.7, top_p=0.5, stop=["x", "y"], seed=3, logit_bias={"7": 1.0})
    applied = defaults.apply(r, d)
    assert sorted(applied) == ["logit_bias", "seed", "top_p"]
    assert (r.temperature, r.top_p, list(r.stop), r.seed) == (0.0, 0.5, ["END"], 3)
    assert dict(r.logit_bias) == {"7": 1.0}


def test_two_spellings_of_one_setting_count_as_set() -> None:
    r = request(max_tokens=10)
    defaults.apply(r, request(max_completion_tokens=99, reasoning_effort=3))
    assert not r.HasField("max_completion_tokens")
    assert r.reasoning_effort == 3
    r = request(reasoning=message_pb2.Reasoning(effort=message_pb2.REASONING_EFFORT_LOW))
    defaults.apply(r, request(reasoning_effort=4))
    assert r.reasoning_effort == 0


def test_oneof_members_count_as_one_parameter() -> None:
    named = message_pb2.NamedToolChoice()
    named.function.name = "f"
    r = request(tool_choice_named=named)
    defaults.apply(r, request(tool_choice_mode=message_pb2.TOOL_CHOICE_MODE_NONE))
    assert r.WhichOneof("tool_choice") == "tool_choice_named"
    r = request()
    defaults.apply(r, request(tool_choice_mode=message_pb2.TOOL_CHOICE_MODE_NONE))
    assert r.tool_choice_mode == message_pb2.TOOL_CHOICE_MODE_NONE


# A `TemplateParameters` (templates.v1, before GenerationParameters replaced it) as stored
# templates hold it: temperature 0.3, stop ["a"], seed 2**40, tool_choice auto, models
# ["m2"], response_format json_object. Stored templates must keep reading the same.
STORED_BEFORE = bytes.fromhex("1a026d3221333333333333d33f420161488080808080208201020802900102")


def test_parameters_stored_by_earlier_versions_read_the_same() -> None:
    p = parameters_pb2.GenerationParameters.FromString(STORED_BEFORE)
    assert (p.temperature, list(p.stop), p.seed, list(p.models)) == (0.3, ["a"], 2**40, ["m2"])
    assert p.tool_choice_mode == message_pb2.TOOL_CHOICE_MODE_AUTO
    assert p.response_format.type == message_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
