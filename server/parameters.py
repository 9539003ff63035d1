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

from dataclasses import dataclass

from google.protobuf.message import Message

from server.errors import UnsupportedParameter
from server.providers.base import BASE_PARAMETERS
from tokenwire.chat.v1 import chat_pb2
from tokenwire.options.v1 import json_pb2

HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "max_tokens",
        "max_completion_tokens",
    }
)

NOT_IMPLEMENTED = frozenset(
    {"models", "template", "variables", "transforms", "plugins", "route", "session_id", "trace"}
)

# The `provider` preferences tokenwire applies so far; the rest are refused.
PROVIDER_FIELDS_HANDLED = frozenset({"require_parameters"})


def json_key(field_name: str, message: type[Message]) -> str:
    """The parameter's name as clients write it (oneof members share one key)."""
    fd = message.DESCRIPTOR.fields_by_name[field_name]
    return fd.GetOptions().Extensions[json_pb2.json].key or field_name


def given(request: Message) -> list[str]:
    """Names of the parameters the request sets, as clients write them."""
    names = (json_key(fd.name, type(request)) for fd, _ in request.ListFields())
    return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Decision:
    dropped: tuple[str, ...]  # parameters the provider cannot honour, left out


def check_implemented(request: chat_pb2.CreateChatCompletionRequest) -> None:
    """Refuse parameters tokenwire does not implement yet."""
    for name in given(request):
        if name in NOT_IMPLEMENTED:
            raise _unsupported(name)
    if request.HasField("provider"):
        for name in given(request.provider):
            if name not in PROVIDER_FIELDS_HANDLED:
                raise _unsupported(f"provider.{name}")


def decide(
    request: chat_pb2.CreateChatCompletionRequest, supported: frozenset[str], provider: str
) -> Decision:
    """Which given parameters `provider` cannot honour; 400 if they are required."""
    known = HANDLED | BASE_PARAMETERS | supported | {"provider"}
    missing = tuple(n for n in given(request) if n not in known and not _no_op(request, n))
    if missing and request.provider.require_parameters:
        raise UnsupportedParameter(
            f"Provider '{provider}' cannot honour {', '.join(missing)} and "
            "provider.require_parameters is true.",
            param=missing[0],
        )
    return Decision(missing)


def _no_op(request: chat_pb2.CreateChatCompletionRequest, name: str) -> bool:
    """A parameter set to the value that asks for nothing (`n: 1`) needs no support."""
    return name == "n" and request.n == 1


def _unsupported(name: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"The parameter '{name}' is not supported by this tokenwire server yet.", param=name
    )
