"""One organization's failing requests do not cut a provider off for the others.

End to end: the official openai SDK as two organizations → tokenwire → a real HTTP
upstream on 127.0.0.1 that answers 500 to prompts carrying a marker. The failures the
upstream owes to one organization's content open only that organization's circuit;
a provider that is really down (connection refused, 503) still opens for everyone.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from server.errors import (
    BadUpstream,
    ProviderError,
    RateLimited,
    TokenwireError,
    UpstreamTimeout,
)
from server.routing.breaker import MAX_ORGANIZATIONS, Breaker, BreakerConfig, blames_request
from server.runtime import app
from tests.conftest import StartService
from tests.limits.clock import Clock
from tests.routing.test_fallback import chain
from tests.routing.upstream_server import (
    Received,
    Reply,
    Upstream,
    free_port,
    openai_error,
    openai_text,
)

POISON = "please-fail-upstream"
OK = Reply(events=openai_text("fine"))
BREAKER: dict[str, Any] = {"breaker_min_requests": 3, "breaker_cooldown": 60.0}


def poisoned(request: Received) -> Reply:
    """An upstream whose model crashes (500) on one prompt and answers the rest."""
    prompt = str(request.body.get("messages"))
    return openai_error(500, "model crashed") if POISON in prompt else OK


def organization(service: app.Service, org: str) -> openai.AsyncOpenAI:
    """The SDK as one organization (open mode: the `organization_id` header picks it)."""
    return openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{service.http_port}/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"organization_id": org},
    )


async def chat(client: openai.AsyncOpenAI, text: str) -> int:
    """The HTTP status the request ended with."""
    try:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}]
        )
    except openai.APIStatusError as e:
        return e.status_code
    return 200


async def test_one_organizations_failing_content_does_not_cut_off_another(
    start_service: StartService,
) -> None:
    async with Upstream(poisoned) as up:
        service = await chain(start_service, up.url, **BREAKER)
        async with organization(service, "org-a") as a, organization(service, "org-b") as b:
            assert [await chat(a, POISON) for _ in range(5)] == [503] * 5
            assert len(up.requests) == 3  # org-a's circuit opened after its third failure
            assert await chat(a, "hello") == 503  # org-a is cut off from p0 for now…
            assert len(up.requests) == 3
            assert [await chat(b, "hello") for _ in range(5)] == [200] * 5  # …org-b is not
    assert len(up.requests) == 8
    assert service.router is not None
    assert service.router.breakers["p0"].state == "closed"


@pytest.mark.parametrize("down", ["refused", "503"])
async def test_a_provider_that_is_down_is_cut_off_for_everyone(
    start_service: StartService, down: str
) -> None:
    async with Upstream(openai_error(503, "overloaded")) as up:
        url = f"http://127.0.0.1:{free_port()}/v1" if down == "refused" else up.url
        service = await chain(start_service, url, **BREAKER)
        async with organization(service, "org-a") as a, organization(service, "org-b") as b:
            assert [await chat(a, "hello") for _ in range(3)] == [503] * 3
            assert service.router is not None
            assert service.router.breakers["p0"].state == "open"
            seen = len(up.requests)
            with pytest.raises(openai.APIStatusError, match="cooling down"):
                await b.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hello"}]
                )
            assert len(up.requests) == seen  # org-b's request never reached the upstream


async def test_a_provider_failing_every_organization_is_cut_off_for_everyone(
    start_service: StartService,
) -> None:
    async with Upstream(openai_error(500, "model crashed")) as up:
        service = await chain(start_service, up.url, breaker_organizations=3, **BREAKER)
        clients = [organization(service, f"org-{i}") for i in range(4)]
        for client in clients[:3]:
            assert [await chat(client, "hello") for _ in range(3)] == [503] * 3
        assert service.router is not None
        assert service.router.breakers["p0"].state == "open"
        with pytest.raises(openai.APIStatusError, match="cooling down"):
            await clients[3].chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hello"}]
            )
        for client in clients:
            await client.close()
    assert len(up.requests) == 9


# --- the rule, unit by unit ----------------------------------------------------------------


def answered(status: int, kind: type[TokenwireError] = ProviderError, **kw: Any) -> TokenwireError:
    return kind(f"HTTP {status}", metadata={"upstream_status": str(status)}, **kw)


BLAME: dict[str, tuple[TokenwireError, bool]] = {
    "500 answer": (answered(500), True),
    "502 answer": (answered(502), True),
    "503 answer": (answered(503), False),
    "529 overloaded": (answered(529), False),
    "504 answer": (answered(504, UpstreamTimeout), False),
    "429": (answered(429, RateLimited, retry_after=1), False),
    "credentials refused": (answered(401), False),
    "connection refused": (ProviderError("cannot connect to p"), False),
    "our timeout": (UpstreamTimeout("p sent nothing for 10 s"), False),
    "garbage": (BadUpstream("p sent malformed JSON"), False),
}


@pytest.mark.parametrize(("error", "request_may_cause"), BLAME.values(), ids=BLAME.keys())
def test_which_failures_the_request_may_have_caused(
    error: TokenwireError, request_may_cause: bool
) -> None:
    assert blames_request(error) is request_may_cause


def test_a_probe_answered_with_the_requests_500_closes_the_shared_circuit() -> None:
    clock = Clock()
    breaker = Breaker(BreakerConfig(min_requests=1, cooldown=10), clock)
    breaker.failure("a", ProviderError("cannot connect"))
    clock.now += 10
    assert breaker.allow("a")  # the probe
    breaker.failure("a", answered(500))  # an answer: the provider is back
    assert breaker.state == "closed" and breaker.allow("b")


def test_the_organizations_kept_are_bounded() -> None:
    clock = Clock()
    breaker = Breaker(BreakerConfig(min_requests=1, window=60), clock)
    for i in range(MAX_ORGANIZATIONS):
        breaker.success(f"org-{i}")
    clock.now += 60  # all of them idle now
    breaker.failure("new", answered(500))
    assert not breaker.allow("new") and breaker.allow("org-0")
    assert len(breaker._organizations) <= 2


def test_organizations_cut_off_together_cut_off_everyone() -> None:
    breaker = Breaker(BreakerConfig(min_requests=1, organizations=2), Clock())
    breaker.failure("a", answered(500))
    assert breaker.state == "closed" and not breaker.allow("a") and breaker.allow("b")
    breaker.failure("b", answered(500))
    assert breaker.state == "open" and not breaker.allow("c")
