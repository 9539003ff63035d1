"""Request bodies at the HTTP front: media type, nesting depth, and big bodies off the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from gateway.in_process import InProcessInvoker, captured
from gateway.json_body import MAX_DEPTH, nested_deeper_than
from server.runtime import app
from server.runtime.config import Config
from tests.test_gateway_metadata import Recorder
from tokenwire.chat.v1 import chat_pb2_grpc

CHAT = {"model": "fake-echo", "messages": [{"role": "user", "content": "hi"}]}


def chat_url(service: app.Service) -> str:
    return f"http://127.0.0.1:{service.http_port}/v1/chat/completions"


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, content=body, headers=headers)


# --- Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
async def test_a_body_that_says_it_is_not_json_is_415(
    service: app.Service, content_type: str
) -> None:
    response = await post(chat_url(service), orjson.dumps(CHAT), {"content-type": content_type})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"content-type": "application/json"}, {"content-type": "Application/JSON; charset=utf-8"}],
    ids=["none", "json", "json with charset"],
)
async def test_json_or_an_unlabelled_body_is_served(
    service: app.Service, headers: dict[str, str]
) -> None:
    response = await post(chat_url(service), orjson.dumps(CHAT), headers)
    assert response.status_code == 200


# --- depth ----------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A JSON value `depth` levels deep (even), objects and arrays in turn, as text: orjson
    and json refuse to write (or read) such depths."""
    return b'{"k":[' * (depth // 2) + b"1" + b"]}" * (depth // 2)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 900, 5000])
async def test_a_body_nested_too_deep_is_400_naming_the_limit(
    service: app.Service, depth: int
) -> None:
    tool = b'{"type":"function","function":{"name":"f","parameters":' + nested(depth) + b"}}"
    body = b'{"model":"fake-echo","messages":[],"tools":[' + tool + b"]}"
    response = await post(chat_url(service), body, {"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "json_too_deep"
    assert str(MAX_DEPTH) in error["message"]


@pytest.mark.parametrize(
    ("text", "deeper"),
    [
        (b"[]" * 200, False),  # many brackets, one level
        (b'{"a":' * 128 + b"1" + b"}" * 128, False),
        (b'{"a":' * 129 + b"1" + b"}" * 129, True),
        (b'["' + b"[" * 500 + b'"]', False),  # brackets in a string do not nest
        (b'["\\"' + b"[" * 500 + b'"]', False),  # nor after an escaped quote
        (b'["\\\\"' + b",[" * 129 + b"]" * 129 + b"]", True),  # an escaped backslash ends no string
        (b"]" * 300 + b"[" * 10, False),  # not JSON: left for the parser to name
        (b"[[]" * 200 + b"]" * 200, True),
    ],
)
def test_depth_is_read_off_the_bytes(text: bytes, deeper: bool) -> None:
    assert nested_deeper_than(128, text) is deeper


# --- big bodies -----------------------------------------------------------------------------


@pytest.fixture
async def bare_gateway() -> AsyncIterator[int]:
    """The gateway over a servicer that answers at once: only the gateway's work is timed."""
    invoker = InProcessInvoker(
        captured([(chat_pb2_grpc.add_ChatServiceServicer_to_server, Recorder())])
    )
    http, task, port = await app.serve_http(Config(host="127.0.0.1", http_port=0), invoker)
    yield port
    http.should_exit = True
    await task


async def test_a_big_body_does_not_stall_other_clients(bare_gateway: int) -> None:
    """An ~8 MiB chat body takes the gateway about a second to transcode; small requests
    meanwhile wait at most for orjson's parse (~0.15 s, holding the GIL), not the whole
    transcode (before: they waited it out)."""
    url = f"http://127.0.0.1:{bare_gateway}/v1/chat/completions"
    messages = [{"role": "user", "content": "a"}] * 250_000
    big = orjson.dumps({"messages": messages})
    small = orjson.dumps({"messages": messages[:1]})
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as http:
        started = time.perf_counter()
        big_call = asyncio.ensure_future(http.post(url, content=big, headers=headers))
        slowest = 0.0
        while not big_call.done():
            sent = time.perf_counter()
            assert (await http.post(url, content=small, headers=headers)).status_code == 200
            slowest = max(slowest, time.perf_counter() - sent)
        response = await big_call
        took = time.perf_counter() - started
    assert response.status_code == 200
    assert took > 0.3  # the work is real: otherwise this test shows nothing
    assert slowest < took / 3
