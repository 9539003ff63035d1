"""A request's `trace` is kept with its usage record, over gRPC and REST (the openai SDK),
and read back from `GET /v1/usage` (filtered and grouped by trace) and its CSV export."""

from __future__ import annotations

import csv
import io
import json

import grpc
import openai
import pytest

from server.keys.records import KeySpec
from tests.keys.harness import ADMIN_HEADERS, Served, bearer
from tests.usage.test_chat_e2e import ask
from tokenwire.chat.v1 import routing_pb2

TRACE = {
    "trace_id": "t-42",
    "trace_name": "checkout",
    "span_name": "answer",
    "generation_name": "draft",
    "parent_span_id": "s-7",
    "metadata": {"team": "payments", "env": "staging"},
}


async def test_trace_reaches_the_usage_rows(served: Served) -> None:
    secret = (await served.store.create(KeySpec("acme"), create_organization=True)).secret
    request = ask()
    request.trace.CopyFrom(routing_pb2.Trace(**TRACE))  # type: ignore[arg-type]
    await served.chat().CreateChatCompletion(request, metadata=bearer(secret))
    async with served.http() as http:
        client = openai.AsyncOpenAI(
            base_url="http://tokenwire/v1",
            api_key=secret,
            http_client=http,  # type: ignore[arg-type]  # the SDK's stubs name its vendored httpx
            max_retries=0,
        )
        await client.chat.completions.create(
            model="fake-echo",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"trace": {"trace_id": "t-43"}},
        )
        await client.chat.completions.create(
            model="fake-echo", messages=[{"role": "user", "content": "no trace"}]
        )
        grouped = await http.get("/v1/usage?group_by=trace", headers=ADMIN_HEADERS)
        one = await http.get("/v1/usage?filter.trace_id=t-42", headers=ADMIN_HEADERS)
        export = await http.get("/v1/usage/export?filter.trace_id=t-42", headers=ADMIN_HEADERS)
    buckets = {b.get("trace_id"): b["requests"] for b in grouped.json()["data"]}
    assert buckets == {None: 1, "t-42": 1, "t-43": 1}
    assert one.json()["total"]["requests"] == 1
    (row,) = csv.DictReader(io.StringIO(export.text))
    assert row["trace_id"] == "t-42"
    assert json.loads(row["trace"]) == {
        **TRACE,
        "metadata": {"env": "staging", "team": "payments"},
    }


@pytest.mark.parametrize(
    ("trace", "param"),
    [
        (routing_pb2.Trace(trace_id="x" * 257), "trace.trace_id"),
        (routing_pb2.Trace(span_name="a\x00b"), "trace.span_name"),
        (routing_pb2.Trace(metadata={str(i): "v" for i in range(17)}), "trace.metadata"),
    ],
)
async def test_a_trace_past_its_bounds_is_a_400(
    served: Served, trace: routing_pb2.Trace, param: str
) -> None:
    secret = (await served.store.create(KeySpec("acme"), create_organization=True)).secret
    request = ask()
    request.trace.CopyFrom(trace)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.chat().CreateChatCompletion(request, metadata=bearer(secret))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert param in (caught.value.details() or "")
