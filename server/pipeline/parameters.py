"""Which request parameters tokenwire honours, and what it does with the rest.

Nothing is silently ignored. Each request field is one of:
- handled by tokenwire itself (`model`, `messages`, `stream`, …);
- not implemented yet: refused with 400 naming it;
- up to the serving provider: honoured if the provider lists it in
  `Provider.supported`, otherwise dropped and named in the response's
  `dropped_parameters` (OpenRouter's default), or refused with 400 when
  `provider.require_parameters` is true.
"""

from __future__ import annotations

from functools import cache, lru_cache

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gateway.transcode import Field, plan
from server.errors import UnsupportedParameter
from server.providers.base import BASE_PARAMETERS
from tokenwire.chat.v1 import chat_pb2

# Parameters the pipeline itself acts on (stages, router), whatever the provider.
HANDLED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "user", "metadata", "max_tokens",
        "max_completion_tokens", "models", "provider", "transforms", "route", "template",
        "variables", "session_id", "plugins", "trace", "debug",
    }
)  # fmt: skip

NOT_IMPLEMENTED: frozenset[str] = frozenset()

# The `provider` preferences tokenwire applies so far; the rest are refused.
PROVIDER_FIELDS_HANDLED = frozenset(
    {
        "order",
        "only",
        "ignore",
        "allow_fallbacks",
        "require_parameters",
        "sort",
        "max_price",
        "data_collection",
        "zdr",
        "quantizations",
        "preferred_min_throughput",
        "preferred_max_latency",
    }
)


def json_key(field_name: str, message: type[Message]) -> str:
    """The parameter's name as clients write it (oneof members share one key)."""
    return _field(message.DESCRIPTOR.fields_by_name[field_name]).key


@cache
def _field(fd: FieldDescriptor) -> Field:
    """The field as the gateway reads it (its JSON key, whether it is inline), found once."""
    return plan(fd.containing_type).by_fd[fd]


def given(request: Message) -> tuple[str, ...]:
    """Names of the parameters the request sets, as clients write them (`parameters`' own)."""
    fields: list[FieldDescriptor] = []
    for fd, value in request.ListFields():
        if _field(fd).inline:
            fields.extend(inner for inner, _ in value.ListFields())
        else:
            fields.append(fd)
    return _names(tuple(fields))


@lru_cache(maxsize=1024)  # requests set few combinations of fields; bounded all the same
def _names(fields: tuple[FieldDescriptor, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_field(fd).key for fd in fields))


def check_implemented(request: chat_pb2.CreateChatCompletionRequest) -> None:
    """Refuse parameters tokenwire does not implement yet."""
    for name in given(request):
        if name in NOT_IMPLEMENTED:
            raise _unsupported(name)
    if request.parameters.HasField("provider"):
        for name in given(request.parameters.provider):
            if name not in PROVIDER_FIELDS_HANDLED:
                raise _unsupported(f"provider.{name}")


def missing(
    request: chat_pb2.CreateChatCompletionRequest, supported: frozenset[str]
) -> tuple[str, ...]:
    """The given parameters a provider supporting `supported` cannot honour."""
    unknown = _unknown(given(request), supported)
    return tuple(n for n in unknown if not _no_op(request, n)) if unknown else ()


@lru_cache(maxsize=1024)
def _unknown(names: tuple[str, ...], supported: frozenset[str]) -> tuple[str, ...]:
    known = HANDLED | BASE_PARAMETERS | supported
    return tuple(n for n in names if n not in known)


def _no_op(request: chat_pb2.CreateChatCompletionRequest, name: str) -> bool:
    """A parameter set to the value that asks for nothing (`n: 1`) needs no support."""
    return name == "n" and request.n == 1


def _unsupported(name: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"The parameter '{name}' is not supported by this tokenwire server yet.", param=name
    )
