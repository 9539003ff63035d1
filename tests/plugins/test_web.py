"""The `web` plugin against real search servers on 127.0.0.1 shaped like SearxNG, Brave
and Tavily: results in the prompt, `url_citation` annotations in the answer, `:online`,
over REST (the openai SDK) and gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import openai
import pytest

from server.plugins.backend import BackendConfig
from server.plugins.stage import PluginsConfig
from server.providers import base
from server.providers.fake import FakeConfig, FakeProvider
from server.runtime import app
from tests.conftest import StartService, sdk, user_turn
from tests.openai_schema import validate
from tests.plugins.upstreams import PAGES, Upstream, brave, searxng, serving, tavily
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, routing_pb2

ANSWER = "Oslo is the capital [1]; for trips see https://two.example/page."
WEB = {"plugins": [{"id": "web", "max_results": 2}]}


def answering(text: str) -> FakeProvider:
    script: list[base.Event] = [
        base.Delta(content=text[:20]),
        base.Delta(content=text[20:]),
        base.Delta(finish_reason=base.FinishReason.STOP),
        base.Usage(10, 5),
    ]
    return FakeProvider(FakeConfig(script=script))


@pytest.fixture
async def search() -> AsyncIterator[Upstream]:
    async with serving(
        {"/search": searxng, "/res/v1/web/search": brave, "/tvly/search": tavily}
    ) as upstream:
        yield upstream


async def online(
    start_service: StartService, provider: FakeProvider, config: BackendConfig
) -> app.Service:
    return await start_service([provider], plugins=PluginsConfig(search=config))


def cited(annotations: list[Any]) -> list[tuple[str, int, int]]:
    return [
        (a["url_citation"]["url"], a["url_citation"]["start_index"], a["url_citation"]["end_index"])
        for a in annotations
    ]


async def test_rest_results_in_the_prompt_and_citations_in_the_answer(
    start_service: StartService, search: Upstream
) -> None:
    fake = answering(ANSWER)
    service = await online(start_service, fake, BackendConfig("searxng", search.url))
    async with sdk(service) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-echo",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "capital of Norway?"},
            ],
            extra_body=WEB,
        )
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    marker, url = ANSWER.index("[1]"), ANSWER.index("https://two.example/page")
    assert cited(body["choices"][0]["message"]["annotations"]) == [
        ("https://one.example/oslo", marker, marker + 3),
        ("https://two.example/page", url, url + len("https://two.example/page")),
    ]
    first = body["choices"][0]["message"]["annotations"][0]
    assert first["type"] == "url_citation" and first["url_citation"]["title"] == "Oslo - Wikipedia"
    sent = fake.config.seen[-1].messages
    assert [m.role for m in sent] == ["system", "system", "user"]
    results = sent[1].text()
    assert "<search_results>" in results and "[2] Visit Oslo" in results
    assert "https://three.example/" not in results  # max_results: 2
    assert search.headers[-1]["Host"].startswith("127.0.0.1")


async def test_online_suffix_brave_and_a_stream_with_annotations_last(
    start_service: StartService, search: Upstream
) -> None:
    fake = answering(ANSWER)
    config = BackendConfig("brave", search.url, api_key="brave-key")
    service = await online(start_service, fake, config)
    async with sdk(service) as client:
        stream = await client.chat.completions.create(
            model="fake-echo:online", messages=user_turn("capital of Norway?"), stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert all(c.model == "fake-echo" for c in chunks)
    notes = [(c.choices[0].delta.model_extra or {}).get("annotations") for c in chunks]
    assert notes[:-1] == [None] * (len(chunks) - 1)
    assert notes[-1] is not None and len(notes[-1]) == 3  # brave's default: 5, it has 3
    assert "[3] Norway facts" in fake.config.seen[-1].messages[0].text()


async def test_grpc_with_tavily_and_a_search_prompt(
    start_service: StartService, search: Upstream
) -> None:
    fake = answering("Nothing cited here at all, sorry.")
    config = BackendConfig("tavily", f"{search.url}/tvly", api_key="tvly-key")
    service = await online(start_service, fake, config)
    request = chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text="fjords?")],
        plugins=[routing_pb2.Plugin(id="web", max_results=1, search_prompt="Sources:")],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        response = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    (note,) = response.choices[0].message.annotations
    assert note.type == chat_pb2.ANNOTATION_TYPE_URL_CITATION
    assert (note.url_citation.url, note.url_citation.start_index) == (PAGES[0][0], 0)
    assert search.bodies[-1] == {"query": "fjords?", "max_results": 1}
    assert fake.config.seen[-1].messages[0].text().startswith("Sources:\n")


@pytest.mark.parametrize(
    ("plugin", "why"), [({"max_results": 0}, "max_results"), ({"engine": "exa"}, "engine")]
)
async def test_bad_settings_are_400(
    start_service: StartService, search: Upstream, plugin: dict[str, Any], why: str
) -> None:
    service = await online(start_service, answering("x"), BackendConfig("searxng", search.url))
    async with sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="fake-echo",
                messages=user_turn("q"),
                extra_body={"plugins": [{"id": "web", **plugin}]},
            )
    assert caught.value.body["param"] == "plugins"  # type: ignore[index]
    assert "web plugin" in caught.value.message and why in caught.value.message
    assert not search.bodies  # refused before searching


async def test_without_a_search_service_online_is_a_400(start_service: StartService) -> None:
    service = await start_service([answering("x")])
    async with sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="fake-echo:online", messages=user_turn("q"))
    assert caught.value.code == "plugin_not_configured"
    assert "'web'" in caught.value.message and "[search]" in caught.value.message
