"""Request headers as gRPC metadata: only values gRPC can carry, within its size limit.

gRPC metadata values are printable ASCII, and a server refuses header lists
over its limit (8 KiB by default, some calls from there on, all beyond 16 KiB)
with RESOURCE_EXHAUSTED, which would read as a 429. So the gateway refuses such
headers itself, naming them, before any call: 400 and 431.

The request id rule is here, and the server's RPC boundary applies the same
one to gRPC calls: a client's `x-request-id` is kept when it is 1-128
printable ASCII characters without spaces, else a new one is made.
"""

from __future__ import annotations

import os
import re

from gateway.errors import GatewayError
from gateway.invoker import Metadata

# What the forwarded headers may add up to, counted as HTTP/2 does (name, value and 32 bytes
# per entry), leaving gRPC's own headers room under the server's 8 KiB default.
MAX_METADATA_BYTES = 7 * 1024
# A client's x-request-id is kept only when it is at most 128 printable ASCII characters
# without spaces: it names the completion and its usage record, so it must stay small and plain.
MAX_REQUEST_ID = 128
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")


def request_id_from(client_value: str | None) -> str:
    """The client's `x-request-id` if it fits the rule, else a new one."""
    if client_value is not None and _REQUEST_ID.fullmatch(client_value):
        return client_value
    return new_request_id()


def new_request_id() -> str:
    """`req_` and 32 random hex digits, as `uuid4().hex` prints, for a fifth of its cost."""
    return f"req_{os.urandom(16).hex()}"


def checked(pairs: Metadata) -> Metadata:
    """`pairs` if gRPC can carry them; else a 400 or 431 naming the header at fault."""
    size = 0
    for name, value in pairs:
        if not (value.isascii() and value.isprintable()):
            raise GatewayError(
                400,
                f"The {name} header holds characters other than printable ASCII.",
                code="invalid_header",
            )
        size += len(name) + len(value) + 32
    if size > MAX_METADATA_BYTES:
        largest = max(pairs, key=lambda pair: len(pair[1]))[0]
        raise GatewayError(
            431,
            f"Request headers forwarded to the server come to {size} bytes, over the limit of "
            f"{MAX_METADATA_BYTES} (the largest is {largest}).",
            code="request_header_fields_too_large",
        )
    return pairs
