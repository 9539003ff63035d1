"""A request's JSON body: its media type, its nesting depth, then the parse.

The depth is checked on the bytes, before anything builds the nested
structure: orjson itself stops at 1,024 levels, but everything after it
(transcoding, the server re-reading raw JSON fields) recurses, and nothing
OpenAI-shaped nests past a few dozen levels.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson

from gateway.errors import GatewayError

MAX_DEPTH = 128  # levels of arrays and objects in a request body

_BRACKETS = bytes.maketrans(b"{}", b"[]")  # only the depth matters, not which kind
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STRING = re.compile(rb'"[^"]*"')
_STEP = [0] * 256
_STEP[ord("[")], _STEP[ord("]")] = 1, -1
_PASSES = 4


def require_json(content_type: str | None) -> None:
    """415 unless the body says it is JSON; a body that says nothing is taken as JSON.

    (curl's `-d` alone says `application/x-www-form-urlencoded`: refused, naming the fix.)
    """
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise GatewayError(
            415,
            f"Unsupported Content-Type {media!r}: send the body as JSON with "
            "'Content-Type: application/json'.",
            code="unsupported_media_type",
        )


def parse_json(body: bytes) -> Any:
    if not body:
        raise GatewayError(400, "We could not parse the JSON body of your request: it is empty.")
    if nested_deeper_than(MAX_DEPTH, body):
        raise GatewayError(
            400,
            f"The JSON body of your request nests arrays and objects deeper than {MAX_DEPTH} "
            "levels.",
            code="json_too_deep",
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise GatewayError(400, f"We could not parse the JSON body of your request: {e}.") from None


def nested_deeper_than(levels: int, body: bytes) -> bool:
    """Whether arrays and objects in JSON `body` nest more than `levels` deep (`[]` is 1).

    On the bytes, at C speed but for the last step: escapes and strings are dropped, then
    the brackets left. Text that is not JSON may answer either way: the parser refuses it.
    """
    if body.count(b"[") + body.count(b"{") <= levels:
        return False  # most bodies: too few brackets to nest that deep
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(_BRACKETS, _NOT_STRUCTURE)
    # Adjacent quotes enclose no brackets (an empty string, or one string's end and the next's
    # start): dropping them first leaves the regex only strings that hold brackets.
    text = _STRING.sub(b"", text.replace(b'""', b""))
    if b"[" * (levels + 1) in text:
        return True
    for _ in range(_PASSES):  # each pass takes one level off: shallow bodies vanish
        shorter = text.replace(b"[]", b"")
        if not shorter or len(shorter) == len(text):
            return False
        text = shorter
    return max(accumulate(map(_STEP.__getitem__, text))) > levels - _PASSES
