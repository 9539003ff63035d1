"""Query strings into typed JSON for the request fields a route leaves to the query."""

from __future__ import annotations

import pytest

from gateway.transcode import TranscodeError, query_json
from tokenwire.chat.v1 import chat_pb2

REQUEST = chat_pb2.CreateChatCompletionRequest.DESCRIPTOR


def test_values_take_their_field_types() -> None:
    pairs = [("temperature", "0.5"), ("n", "2"), ("logprobs", "true"), ("model", "m")]
    assert query_json(REQUEST, pairs) == {
        "temperature": 0.5,
        "n": 2,
        "logprobs": True,
        "model": "m",
    }


def test_repeated_and_nested_fields() -> None:
    pairs = [("stop", "a"), ("stop", "b"), ("stream_options.include_usage", "false")]
    assert query_json(REQUEST, pairs) == {
        "stop": ["a", "b"],
        "stream_options": {"include_usage": False},
    }


@pytest.mark.parametrize(
    ("pairs", "param"),
    [
        ([("nope", "1")], "nope"),
        ([("n", "two")], "n"),
        ([("logprobs", "yes")], "logprobs"),
        ([("stream_options.nope", "1")], "stream_options.nope"),
    ],
)
def test_bad_parameters_are_named(pairs: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(TranscodeError) as caught:
        query_json(REQUEST, pairs)
    assert caught.value.param == param
