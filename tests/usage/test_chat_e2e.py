"""Chat requests through every stage (auth ▶ tags ▶ limits ▶ budget) over gRPC and REST,
each leaving exactly one usage record in the real database.
"""

from __future__ import annotations

import grpc
import pytest

from server.keys.records import KeySpec
from server.limits.base import Rate
from server.usage.query import UsageFilter
from tests.keys.harness import Served, bearer, trailing
from tokenwire.chat.v1 import chat_pb2, message_pb2

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "hello there"}]}


def ask(model: str = "fake-echo") -> chat_pb2.CreateChatCompletionRequest:
    message = message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="hello there")
    return chat_pb2.CreateChatCompletionRequest(model=model, messages=[message])


async def new_key(served: Served, org: str = "acme", **spec: object) -> str:
    issued = await served.store.create(KeySpec(org, **spec), create_organization=True)  # type: ignore[arg-type]
    return issued.secret


async def test_a_keyed_grpc_call_is_recorded_with_its_tenancy(served: Served) -> None:
    secret = await new_key(served, rate=Rate(requests=10, tokens=1000))
    metadata = (*bearer(secret), ("x-session-id", "s-1"))
    call = served.chat().CreateChatCompletion(ask(), metadata=metadata)
    response = await call
    assert response.choices[0].message.content == "hello there "
    found = trailing(await call.trailing_metadata())
    assert found["x-ratelimit-remaining-requests"] == "9"
    assert found["x-ratelimit-remaining-tokens"] == "1000"
    (stored,) = await served.usage.records(UsageFilter(), 10)
    key = (await served.store.list())[0]
    assert (stored.key_id, stored.organization_id, stored.session_id) == (key.id, "acme", "s-1")
    assert stored.cost_usd == pytest.approx(0.04) and stored.status == "ok"
    assert (await served.store.get(key.id)).spent_usd == pytest.approx(0.04)


async def test_rest_without_a_key_is_401_with_a_challenge(served: Served) -> None:
    async with served.http() as http:
        response = await http.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tokenwire"'
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_model_the_key_may_not_use_is_403(served: Served) -> None:
    secret = await new_key(served, allowed_models=("fake-echo",))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.chat().CreateChatCompletion(ask("other-model"), metadata=bearer(secret))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await served.chat().CreateChatCompletion(ask(), metadata=bearer(secret))


async def test_another_organization_header_is_403_on_both_transports(served: Served) -> None:
    secret = await new_key(served)
    await served.store.organizations.create("globex")
    metadata = (*bearer(secret), ("organization_id", "globex"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.chat().CreateChatCompletion(ask(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    headers = {"Authorization": f"Bearer {secret}", "organization_id": "globex"}
    async with served.http("in-process") as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 403 and response.json()["error"]["param"] == "organization_id"


@pytest.mark.parametrize("invoker", ["in-process", "channel"])
async def test_a_spent_budget_is_402(served: Served, invoker: str) -> None:
    secret = await new_key(served, budget_usd=0.05)
    headers = {"Authorization": f"Bearer {secret}"}
    async with served.http(invoker) as http:
        statuses = [
            (await http.post("/v1/chat/completions", json=BODY, headers=headers)).status_code
            for _ in range(2)
        ]
        refused = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert statuses == [200, 200]
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"


@pytest.mark.parametrize("invoker", ["in-process", "channel"])
async def test_rate_limited_rest_calls_get_openai_headers(served: Served, invoker: str) -> None:
    secret = await new_key(served, rate=Rate(requests=2, window=60))
    headers = {"Authorization": f"Bearer {secret}"}
    async with served.http(invoker) as http:
        ok = [await http.post("/v1/chat/completions", json=BODY, headers=headers) for _ in range(2)]
        refused = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert ok[0].headers["x-ratelimit-remaining-requests"] == "1"
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"


async def test_the_rate_limit_reaches_grpc_callers_as_trailing_metadata(served: Served) -> None:
    secret = await new_key(served, rate=Rate(requests=1, window=60))
    await served.chat().CreateChatCompletion(ask(), metadata=bearer(secret))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.chat().CreateChatCompletion(ask(), metadata=bearer(secret))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    found = trailing(caught.value.trailing_metadata())
    assert found["x-ratelimit-remaining-requests"] == "0"
    served.clock.advance(60)
    await served.chat().CreateChatCompletion(ask(), metadata=bearer(secret))


async def test_an_oversized_session_header_is_400(served: Served) -> None:
    secret = await new_key(served)
    headers = {"Authorization": f"Bearer {secret}", "x-session-id": "s" * 129}
    async with served.http() as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-session-id"


async def test_every_request_leaves_one_record_refused_or_not(served: Served) -> None:
    secret = await new_key(served, rate=Rate(requests=1, window=60))
    await served.chat().CreateChatCompletion(ask(), metadata=bearer(secret))
    for metadata in (bearer(secret), bearer("garbage"), ()):
        with pytest.raises(grpc.aio.AioRpcError):
            await served.chat().CreateChatCompletion(ask(), metadata=metadata)
    records = await served.usage.records(UsageFilter(), 10)
    assert [r.http_status for r in records] == [200, 429, 401, 401]
