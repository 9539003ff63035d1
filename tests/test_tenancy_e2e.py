"""Keys, organizations, limits, budgets and usage through the wired service, REST and SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from server.providers.fake import FakeProvider
from server.routing.catalog import Endpoint
from server.runtime import app, compose
from server.runtime.config import Config
from tests.backends import POSTGRES_URL, REDIS_URL, postgres_schema, require
from tests.conftest import StartService, user_turn

ADMIN = "admin-token-0123456789"
USER = user_turn("hello there")


def priced(fake: FakeProvider, price: float) -> list[Endpoint]:
    """The fake's model at `price` USD per million tokens each way."""
    (e,) = compose.embedded_endpoints(fake, int(time.time()))
    return [replace(e, prompt_price=price, completion_price=price)]


class Tenancy:
    """REST helpers against one running service."""

    def __init__(self, service: app.Service) -> None:
        self.base = f"http://127.0.0.1:{service.http_port}"

    async def key(self, org: str, **spec: Any) -> str:
        body = {"organization_id": org, "create_organization": True, **spec}
        async with httpx.AsyncClient(base_url=self.base) as http:
            r = await http.post(
                "/v1/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"}
            )
        assert r.status_code == 200, r.text
        secret: str = r.json()["secret"]
        return secret

    def sdk(self, key: str, **headers: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.base}/v1", api_key=key, max_retries=0, default_headers=headers
        )

    async def usage(self, key: str, **query: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base) as http:
            r = await http.get(
                "/v1/usage", params=query, headers={"authorization": f"Bearer {key}"}
            )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
async def tenancy(start_service: StartService, fake: FakeProvider) -> Tenancy:
    service = await start_service([fake], admin_token=ADMIN, endpoints=priced(fake, 1000.0))
    return Tenancy(service)


async def test_open_until_the_first_key(start_service: StartService, fake: FakeProvider) -> None:
    t = Tenancy(await start_service([fake], admin_token=ADMIN))
    async with t.sdk("anything") as client:
        assert (await client.chat.completions.create(model="fake-echo", messages=USER)).id
    key = await t.key("acme")
    async with t.sdk("anything") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="fake-echo", messages=USER)
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")
    async with t.sdk(key) as client:
        assert (await client.chat.completions.create(model="fake-echo", messages=USER)).id


@pytest.mark.parametrize("path", ["/v1/templates", "/v1/memories"])
async def test_organization_services_refuse_a_bad_key_with_a_challenge(
    tenancy: Tenancy, path: str
) -> None:
    """401 with `WWW-Authenticate` from whichever service refuses (templates and memories
    dropped the response headers of their errors before the one RPC boundary)."""
    await tenancy.key("acme")
    async with httpx.AsyncClient(base_url=tenancy.base) as http:
        r = await http.get(path, headers={"authorization": "Bearer sk-not-ours"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == 'Bearer realm="tokenwire"'


async def test_usage_is_recorded_per_session_and_isolated(tenancy: Tenancy) -> None:
    acme, globex = await tenancy.key("acme"), await tenancy.key("globex")
    async with tenancy.sdk(acme, **{"x-session-id": "s-1"}) as client:
        for _ in range(2):
            await client.chat.completions.create(model="fake-echo", messages=USER)
    report = await tenancy.usage(acme, group_by="session")
    assert [(b["session_id"], b["requests"]) for b in report["data"]] == [("s-1", 2)]
    assert report["total"]["cost_usd"] > 0
    assert (await tenancy.usage(globex))["total"]["requests"] == 0  # never another org's
    async with httpx.AsyncClient(base_url=tenancy.base) as http:
        peek = await http.get(
            "/v1/usage",
            params={"filter.organization_id": "acme"},
            headers={"authorization": f"Bearer {globex}"},
        )
    assert peek.status_code == 403


async def test_model_not_allowed_and_org_mismatch(tenancy: Tenancy) -> None:
    key = await tenancy.key("acme", allowed_models=["something-else"])
    async with tenancy.sdk(key) as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="fake-echo", messages=USER)
    other = await tenancy.key("acme")
    async with tenancy.sdk(other, organization_id="globex") as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="fake-echo", messages=USER)


async def test_rate_limit_answers_429_with_openai_headers(tenancy: Tenancy) -> None:
    key = await tenancy.key("acme", rate_limit={"requests": 1, "window_seconds": 3600})
    async with tenancy.sdk(key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo", messages=USER
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "1"
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="fake-echo", messages=USER)
    assert int(caught.value.response.headers["retry-after"]) > 0


async def test_budget_spent_is_402(tenancy: Tenancy) -> None:
    key = await tenancy.key("acme", budget_usd=0.001)  # one request costs ~0.005 USD here
    async with tenancy.sdk(key) as client:
        await client.chat.completions.create(model="fake-echo", messages=USER)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="fake-echo", messages=USER)
    assert caught.value.status_code == 402


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"session_id": "s" * 129}, "session_id"), ({"user": "u" * 257}, "user")],
)
async def test_oversized_identifiers_are_400(
    tenancy: Tenancy, extra: dict[str, str], param: str
) -> None:
    key = await tenancy.key("acme")
    async with tenancy.sdk(key) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="fake-echo", messages=USER, extra_body=extra)
    assert caught.value.param == param


@pytest.fixture
async def shared_backends() -> AsyncIterator[str]:
    require(POSTGRES_URL)
    require(REDIS_URL)
    async with postgres_schema() as url:
        yield url


async def test_two_replicas_share_one_limit_and_one_ledger(shared_backends: str) -> None:
    fakes = [FakeProvider(), FakeProvider()]
    settings = {
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "grace": 1.0,
        "retries": 0,
        "database_url": shared_backends,
        "redis_url": REDIS_URL,
        "admin_token": ADMIN,
    }
    replicas = [await app.start(Config(**settings), [f]) for f in fakes]  # type: ignore[arg-type]
    targets = ",".join(f"127.0.0.1:{r.grpc_port}" for r in replicas)
    gateway = await app.start_gateway(
        Config(host="127.0.0.1", http_port=0, grpc_target=f"ipv4:{targets}")
    )
    try:
        warm = await Tenancy(replicas[0]).key("acme")
        for _ in range(20):  # bounded: round_robin uses a replica once it is connected
            await _burst(Tenancy(gateway).sdk(warm), 1)
            if all(f.config.seen for f in fakes):
                break
        assert all(f.config.seen for f in fakes), "round_robin spread the calls over both"
        warmed = sum(len(f.config.seen) for f in fakes)
        limited = {"requests": 6, "window_seconds": 3600}
        key = await Tenancy(replicas[0]).key("acme", rate_limit=limited)
        statuses = await _burst(Tenancy(gateway).sdk(key), 10)
        assert statuses.count(200) == 6 and statuses.count(429) == 4
        for r in replicas:
            assert r.settle is not None
            await r.settle()
        total = (await Tenancy(replicas[1]).usage(key))["total"]
        # One ledger, whichever replica served: every request has its record, refused ones too.
        assert (total["requests"], total["errors"]) == (warmed + 10, 4)
    finally:
        await gateway.stop()
        for r in replicas:
            await r.stop()


async def _burst(client: openai.AsyncOpenAI, count: int) -> list[int]:
    async def one() -> int:
        try:
            await client.chat.completions.create(model="fake-echo", messages=USER)
        except openai.APIStatusError as e:
            return e.status_code
        return 200

    async with client:
        return list(await asyncio.gather(*(one() for _ in range(count))))
