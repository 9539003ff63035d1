"""The `file-parser` plugin: PDF parts of a message (`{"type": "file", "file": {"filename",
"file_data": "data:application/pdf;base64,…"}}`) turned into text the model can read.

`pdf.engine`: `pdf-text` (the default) extracts each page's text with pypdf and puts a
text part in the file's place; `mistral-ocr` does the same with the text Mistral's OCR
service reads (`server.plugins.ocr`; a 400 saying it is not available when the config
file has no `[ocr]`); `native` leaves the file for an upstream that reads files itself.
A PDF that is not base64, not a PDF, encrypted or past `MAX_PAGES` is a 400; one
past `MAX_BYTES` a 413. Local extraction runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re
from collections.abc import Awaitable, Callable

from server.errors import InvalidRequest, TooLarge
from server.plugins.ocr import Ocr
from tokenwire.chat.v1 import message_pb2, routing_pb2

ENGINES = ("pdf-text", "native", "mistral-ocr")
MAX_BYTES = 4 * 1024 * 1024
MAX_PAGES = 500
_DATA_URL = re.compile(r"data:(?P<type>[^;,]+)?(;[^,]*)?,", re.IGNORECASE)


def engine(plugin: routing_pb2.Plugin) -> str:
    """The plugin's `pdf.engine`, checked."""
    try:
        settings = json.loads(plugin.pdf) if plugin.pdf else {}
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise InvalidRequest("The file-parser plugin's 'pdf' must be an object.", param="plugins")
    chosen = settings.get("engine", "pdf-text")
    if chosen not in ENGINES:
        raise InvalidRequest(
            f"The file-parser plugin's 'pdf.engine' is one of {', '.join(ENGINES)}.",
            param="plugins",
        )
    return str(chosen)


# What reads one file part: its `file_data` and the request field it came from, to its text.
Reader = Callable[[str, str], Awaitable[str]]


async def read_locally(file_data: str, param: str) -> str:
    """`pdf-text`: pypdf, in a thread."""
    return await asyncio.to_thread(pdf_text, file_data, param)


def read_with(ocr: Ocr) -> Reader:
    """`mistral-ocr`: the PDF, checked as `pdf_text` checks it, sent to the OCR service."""

    async def read(file_data: str, param: str) -> str:
        encoded = _encoded(file_data, param)
        if not _base64(encoded, param).startswith(b"%PDF"):  # refused here, as pdf-text would
            raise InvalidRequest(f"'{param}' is not a readable PDF.", param=param)
        return await ocr.text(encoded)

    return read


async def parse_files(messages: list[message_pb2.ChatMessage], read: Reader = read_locally) -> None:
    """Every PDF file part of `messages` replaced by a text part holding its text."""
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content_parts.parts):
            if part.type == message_pb2.CONTENT_PART_TYPE_FILE and part.file.HasField("file_data"):
                param = f"messages[{i}].content[{j}].file"
                text = await read(part.file.file_data, param)
                name = part.file.filename or "document.pdf"
                cache = message_pb2.CacheControl()
                cache.CopyFrom(part.cache_control)
                part.Clear()
                part.type = message_pb2.CONTENT_PART_TYPE_TEXT
                part.text = f'<file name="{name}">\n{text}\n</file>'
                if cache.type:
                    part.cache_control.CopyFrom(cache)


def pdf_text(file_data: str, param: str) -> str:
    """The text of the PDF in `file_data` (a data URL or bare base64), page after page."""
    # Imported on first use: pypdf (with cryptography) is ~16 MiB in every process that
    # imports it, most of which never read a PDF (the --workers supervisor, most servers).
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    data = _decoded(file_data, param)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidRequest(f"'{param}' is an encrypted PDF.", param=param)
        if len(reader.pages) > MAX_PAGES:
            raise InvalidRequest(f"'{param}' has more than {MAX_PAGES} pages.", param=param)
        pages = [page.extract_text() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise InvalidRequest(f"'{param}' is not a readable PDF ({error}).", param=param) from None
    return "\n\n".join(p.strip() for p in pages if p and p.strip())


def _decoded(file_data: str, param: str) -> bytes:
    return _base64(_encoded(file_data, param), param)


def _encoded(file_data: str, param: str) -> str:
    """The base64 text of a data URL (or bare base64) that may hold a PDF of our size."""
    match = _DATA_URL.match(file_data)
    if match and (match["type"] or "").lower() not in ("application/pdf", ""):
        raise InvalidRequest(f"'{param}' is {match['type']}, not a PDF.", param=param)
    encoded = file_data[match.end() :] if match else file_data
    if len(encoded) * 3 // 4 > MAX_BYTES:
        raise TooLarge(f"'{param}' is larger than {MAX_BYTES} bytes.", param=param)
    return encoded


def _base64(encoded: str, param: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{param}' is not base64 data.", param=param) from None
