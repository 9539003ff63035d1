"""The `file-parser` plugin with real PDFs made by pypdf: their text reaches the model over
REST (the openai SDK) and gRPC; `native` leaves the file alone; bad, encrypted and
oversized PDFs and `mistral-ocr` without an OCR service are OpenAI-shaped 400s and 413s
(`mistral-ocr` with one: tests/plugins/test_ocr.py)."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import openai
import pytest

from server.plugins.files import MAX_BYTES
from server.providers.fake import FakeProvider
from tests.conftest import StartService, sdk
from tests.plugins.pdfs import data_url, pdf
from tokenwire.chat.v1 import chat_pb2, chat_pb2_grpc, message_pb2, routing_pb2

HANDBOOK = pdf("Rule 7: always hydrate.", "Rule 8: rest on Sundays.")


def with_file(file_data: str, engine: str | None = None) -> dict[str, Any]:
    pdf_settings = {"pdf": {"engine": engine}} if engine else {}
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise:"},
                    {"type": "file", "file": {"filename": "rules.pdf", "file_data": file_data}},
                ],
            }
        ],
        "extra_body": {"plugins": [{"id": "file-parser", **pdf_settings}]},
    }


async def test_rest_pdf_text_reaches_the_model(
    start_service: StartService, fake: FakeProvider
) -> None:
    service = await start_service([fake])
    async with sdk(service) as client:
        completion = await client.chat.completions.create(
            model="fake-echo", **with_file(data_url(HANDBOOK))
        )
    (message,) = fake.config.seen[-1].messages
    assert isinstance(message.content, tuple)
    assert [p.type for p in message.content] == ["text", "text"]
    assert message.content[1].text == (
        '<file name="rules.pdf">\nRule 7: always hydrate.\n\nRule 8: rest on Sundays.\n</file>'
    )
    assert "hydrate." in (completion.choices[0].message.content or "")


async def test_native_forwards_the_file(start_service: StartService, fake: FakeProvider) -> None:
    service = await start_service([fake])
    async with sdk(service) as client:
        await client.chat.completions.create(
            model="fake-echo", **with_file(data_url(HANDBOOK), "native")
        )
    (message,) = fake.config.seen[-1].messages
    assert isinstance(message.content, tuple)
    assert message.content[1].type == "file" and message.content[1].data == data_url(HANDBOOK)


@pytest.mark.parametrize(
    ("file_data", "engine", "status", "words"),
    [
        (data_url(b"%PDF-1.4 not really"), None, 400, "not a readable PDF"),
        (data_url(pdf("secret", password="pw")), None, 400, "encrypted"),
        ("data:application/pdf;base64,@@@@", None, 400, "not base64"),
        (data_url(HANDBOOK, "image/png"), None, 400, "not a PDF"),
        (data_url(b"%PDF" + b"0" * MAX_BYTES), None, 413, "larger than"),
        (data_url(HANDBOOK), "mistral-ocr", 400, "'mistral-ocr' engine is not available"),
        (data_url(HANDBOOK), "tesseract", 400, "pdf.engine"),
    ],
)
async def test_bad_files_are_refused_with_a_message(
    start_service: StartService,
    fake: FakeProvider,
    file_data: str,
    engine: str | None,
    status: int,
    words: str,
) -> None:
    service = await start_service([fake])
    async with sdk(service) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="fake-echo", **with_file(file_data, engine))
    assert caught.value.status_code == status
    assert words in caught.value.message
    assert not fake.config.seen


def grpc_request(engine: str) -> chat_pb2.CreateChatCompletionRequest:
    part = message_pb2.ContentPart(
        type=message_pb2.CONTENT_PART_TYPE_FILE,
        file=message_pb2.FileInput(file_data=base64.b64encode(HANDBOOK).decode()),
    )
    return chat_pb2.CreateChatCompletionRequest(
        model="fake-echo",
        messages=[
            message_pb2.ChatMessage(
                role=message_pb2.ROLE_USER, content_parts=message_pb2.ContentParts(parts=[part])
            )
        ],
        plugins=[routing_pb2.Plugin(id="file-parser", pdf=f'{{"engine": "{engine}"}}')],
    )


async def test_grpc_pdf_text(start_service: StartService, fake: FakeProvider) -> None:
    service = await start_service([fake])
    request = grpc_request("pdf-text")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        response = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(request)
    assert response.choices[0].message.content.startswith('<file name="document.pdf"> Rule 7:')
