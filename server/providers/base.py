"""The provider interface and the small types it speaks.

A provider turns one `GenerationRequest` into an async stream of `Event`s:
`Delta`s as text arrives, then exactly one `Usage`. The last `Delta` of each
choice carries its `finish_reason`. Providers know nothing of protobuf or
HTTP; they raise `server.errors.ProviderError` subclasses for upstream
failures. Closing the stream early (the client went away) must stop the work
at once.

The types are values: nobody changes one once built. Those built on every
request or event (`Message`, `GenerationRequest`, `Delta`, `Usage`) are not
frozen all the same, since freezing costs an `object.__setattr__` per field
per instance: about 5% of a request's CPU for `GenerationRequest` alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class CacheControl:
    """A prompt-cache breakpoint on a content part (Anthropic's `cache_control`)."""

    type: str = "ephemeral"
    ttl: str | None = None

    def json(self) -> dict[str, str]:
        return {"type": self.type, **({"ttl": self.ttl} if self.ttl else {})}


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One typed part of a message: `text`, `image_url`, `input_audio` or `file`."""

    type: str
    text: str | None = None
    url: str | None = None  # image_url
    detail: str | None = None
    data: str | None = None  # base64 audio or file data
    format: str | None = None  # audio format
    file_id: str | None = None
    filename: str | None = None
    cache_control: CacheControl | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model wrote it


@dataclass(slots=True)
class Message:
    role: str  # system, developer, user, assistant, tool
    content: str | tuple[ContentPart, ...] | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    reasoning: str | None = None

    def text(self) -> str:
        """The message's text, its text parts joined when it has parts."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(p.text or "" for p in self.content if p.type == "text")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: str | None = None  # JSON Schema as JSON text, verbatim
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # none, auto, required, or function (then `function` names it)
    function: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: str  # text, json_object, json_schema
    schema: str | None = None  # JSON text for json_schema
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class GenerationRequest:
    """What a provider is asked to generate, every parameter already validated."""

    model: str  # the provider's own model id
    messages: tuple[Message, ...]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    # Whether the caller reads the answer as it is made. When not, a provider may ask its
    # upstream for the whole answer at once, which costs both sides less.
    streamed: bool = True


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None  # only on a call's first delta
    name: str | None = None  # only on a call's first delta
    arguments: str = ""


@dataclass(slots=True)
class Delta:
    """What one step adds to choice `choice`."""

    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    choice: int = 0


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # prompt tokens written to the provider's cache
    estimated: bool = False  # counted by tokenwire, not reported by the upstream


Event = Delta | Usage


@runtime_checkable
class EchoesBody(Protocol):
    """A provider that can show the body it sends upstream (`debug.echo_upstream_body`)."""

    def upstream_body(self, request: GenerationRequest) -> str:
        """The JSON body `stream(request)` sends, credentials redacted."""
        ...


@dataclass(frozen=True, slots=True)
class ModelCard:
    """A model a provider serves, as listed by `/v1/models`."""

    id: str
    owned_by: str
    created: int = 0
    context_length: int | None = None
    aliases: tuple[str, ...] = ()


# Parameters every provider honours; others must be listed in `Provider.supported`.
BASE_PARAMETERS = frozenset({"model", "messages", "max_tokens", "stream", "user"})

# Everything else a `GenerationRequest` can carry: what a provider may list as supported.
ALL_PARAMETERS = frozenset(
    {
        "temperature", "top_p", "max_completion_tokens", "stop", "seed", "n",
        "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
        "response_format", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort",
    }
)  # fmt: skip


class Provider(Protocol):
    """A backend that generates completions."""

    @property
    def name(self) -> str:
        """Slug naming the provider in responses and routing (`local`, `openai`, …)."""
        ...

    @property
    def supported(self) -> frozenset[str]:
        """Request parameter names (beyond `BASE_PARAMETERS`) this provider honours."""
        ...

    def models(self) -> tuple[ModelCard, ...]:
        """The models this provider serves."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Generate: deltas as they come, then one `Usage`."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
