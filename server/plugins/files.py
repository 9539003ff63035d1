"""The `file-parser` plugin: PDF parts of a message (`{"type": "file", "file": {"filename",
"file_data": "data:application/pdf;base64,…"}}`) turned into text the model can read.

`pdf.engine`: `pdf-text` (the default) extracts each page's text with pypdf and puts a
text part in the file's place; `native` leaves the file for an upstream that reads files
itself. `mistral-ocr` (OpenRouter's OCR by Mistral's service) is not available here: no
OCR service is integrated, so asking for it is a 400 `engine_not_available` that says
so and names the two engines that work, never a silent fallback to another engine.
A PDF that is not base64, not a PDF, encrypted or past `MAX_PAGES` is a 400; one
past `MAX_BYTES` a 413. Extraction runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from server.errors import InvalidRequest, TooLarge
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
    if chosen == "mistral-ocr":
        raise InvalidRequest(
            "The file-parser plugin's 'mistral-ocr' engine is not available on this server "
            "(it has no OCR service); use 'pdf-text' to extract the text here or 'native' "
            "to pass the file to a model that reads files.",
            param="plugins",
            code="engine_not_available",
        )
    return str(chosen)


async def parse_files(messages: list[message_pb2.ChatMessage]) -> None:
    """Every PDF file part of `messages` replaced by a text part holding its text."""
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content_parts.parts):
            if part.type == message_pb2.CONTENT_PART_TYPE_FILE and part.file.HasField("file_data"):
                param = f"messages[{i}].content[{j}].file"
                text = await asyncio.to_thread(pdf_text, part.file.file_data, param)
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
    match = _DATA_URL.match(file_data)
    if match and (match["type"] or "").lower() not in ("application/pdf", ""):
        raise InvalidRequest(f"'{param}' is {match['type']}, not a PDF.", param=param)
    encoded = file_data[match.end() :] if match else file_data
    if len(encoded) * 3 // 4 > MAX_BYTES:
        raise TooLarge(f"'{param}' is larger than {MAX_BYTES} bytes.", param=param)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{param}' is not base64 data.", param=param) from None
