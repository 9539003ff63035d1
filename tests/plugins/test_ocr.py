"""The `file-parser` plugin's `mistral-ocr` engine against a real Mistral-shaped `/v1/ocr`
server on 127.0.0.1: the pages' Markdown reaches the model over REST (the openai SDK) and
gRPC; without `[ocr]` the engine is a 400 saying it is not available; a failing or odd
service is a 503 or 502, never a silent fallback to pypdf."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import openai
import pytest
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.plugins.backend import BackendConfig
from server.plugins.stage import PluginsConfig
from server.providers.fake import FakeProvider
from server.runtime import app
from server.runtime.config import load
from tests.conftest import StartService, sdk
from tests.plugins.pdfs import data_url
from tests.plugins.test_file_parser import HANDBOOK, grpc_request, with_file
from tests.plugins.upstreams import Handler, Upstream, mistral_ocr, serving
from tokenwire.chat.v1 import chat_pb2_grpc

OCR_TEXT = "## Page 1\nRule 7: always hydrate.\n\n## Page 2\nRule 8: rest on Sundays."


@asynccontextmanager
async def reading(
    start_service: StartService,
    fake: FakeProvider,
    handler: Handler = mistral_ocr,
    model: str | None = None,
) -> AsyncIterator[tuple[app.Service, Upstream]]:
    """tokenwire whose `[ocr]` is an upstream answering `/v1/ocr` with `handler`."""
    async with serving({"/v1/ocr": handler}) as upstream:
        config = BackendConfig("mistral", f"{upstream.url}/v1", api_key="ocr-key", model=model)
        yield await start_service([fake], plugins=PluginsConfig(ocr=config)), upstream


async def test_rest_the_pages_markdown_reaches_the_model(
    start_service: StartService, fake: FakeProvider
) -> None:
    async with reading(start_service, fake) as (service, ocr), sdk(service) as client:
        completion = await client.chat.completions.create(
            model="fake-echo", **with_file(data_url(HANDBOOK), "mistral-ocr")
        )
    (message,) = fake.config.seen[-1].messages
    assert isinstance(message.content, tuple)
    assert message.content[1].text == f'<file name="rules.pdf">\n{OCR_TEXT}\n</file>'
    assert "Page 2" in (completion.choices[0].message.content or "")
    assert ocr.bodies == [
        {
            "model": "mistral-ocr-latest",
            "document": {"type": "document_url", "document_url": data_url(HANDBOOK)},
        }
    ]


async def test_grpc_with_the_configured_model(
    start_service: StartService, fake: FakeProvider
) -> None:
    async with reading(start_service, fake, model="mistral-ocr-2505") as (service, ocr):
        target = f"127.0.0.1:{service.grpc_port}"
        async with grpc.aio.insecure_channel(target) as channel:
            response = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
                grpc_request("mistral-ocr")
            )
    assert response.choices[0].message.content.startswith('<file name="document.pdf"> ## Page 1')
    assert ocr.bodies[-1]["model"] == "mistral-ocr-2505"


async def test_without_ocr_the_engine_is_not_available(
    start_service: StartService, fake: FakeProvider
) -> None:
    # REST: tests/plugins/test_file_parser.py's refusals, with the same message.
    service = await start_service([fake])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
                grpc_request("mistral-ocr")
            )
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.reason, info.metadata["param"]) == ("plugin_not_configured", "plugins")
    assert "'mistral-ocr' engine is not available" in status.message
    assert "[ocr]" in status.message
    assert not fake.config.seen


async def test_a_file_that_is_not_a_pdf_never_reaches_the_service(
    start_service: StartService, fake: FakeProvider
) -> None:
    async with reading(start_service, fake) as (service, ocr), sdk(service) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="fake-echo", **with_file(data_url(b"GIF89a not a pdf"), "mistral-ocr")
            )
    assert "not a readable PDF" in caught.value.message
    assert ocr.bodies == [] and not fake.config.seen


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (web.json_response({"message": "overloaded"}, status=500), 503, "ocr_unavailable"),
        (web.json_response({"pages": [{"index": 0}]}), 502, None),
    ],
)
async def test_a_failing_service_is_an_error_not_a_fallback(
    start_service: StartService,
    fake: FakeProvider,
    answer: web.Response,
    status: int,
    code: str | None,
) -> None:
    async def failing(request: web.Request, body: object) -> web.Response:
        return answer

    async with reading(start_service, fake, failing) as (service, _), sdk(service) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="fake-echo", **with_file(data_url(HANDBOOK), "mistral-ocr")
            )
    assert caught.value.status_code == status
    assert code is None or caught.value.code == code
    assert not fake.config.seen


def test_the_ocr_section(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text('[ocr]\nbase_url = "https://api.mistral.ai/v1"\napi_key_env = "MISTRAL"\n')
    loaded = load({"config": str(path)}, {"MISTRAL": "k"}).plugins.ocr
    assert loaded == BackendConfig("mistral", "https://api.mistral.ai/v1", "k")
    path.write_text('[ocr]\nkind = "tesseract"\nbase_url = "http://x"\n')
    with pytest.raises(ValueError, match="kind is one of mistral"):
        load({"config": str(path)}, {})
