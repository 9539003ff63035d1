"""Chat messages to prompt tokens, through the model's chat template.

The template is the one embedded in the GGUF (`tokenizer.chat_template`),
rendered by llama-cpp-python's `Jinja2ChatFormatter`. The default Gemma 3
270M GGUF is the base model and embeds none, so Google's Gemma 3 template is
carried here as the fallback.

Templates are strict about roles (Gemma's raises unless turns alternate user,
model, user, …), so messages are first normalised into the shape every common
template accepts: at most one leading system message, then alternating user
and assistant turns starting with a user turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_types import ChatCompletionRequestMessage

from server.errors import InvalidRequest
from server.providers.base import Message
from server.providers.llama.tools import call_text, result_text
from server.providers.llama.vocab import Vocab

# Google's Gemma 3 chat template (as published with the instruction-tuned
# models): the system text becomes a prefix of the first user turn, and
# assistant turns are called `model`.
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

_TEXT_PARTS = frozenset({"text"})


@dataclass(frozen=True, slots=True)
class _Turn:
    role: str  # system, user or assistant
    content: str


class ChatPrompter:
    """Renders and tokenizes a conversation for one loaded model."""

    def __init__(self, llm: Any, vocab: Vocab) -> None:
        self._llm = llm
        self._vocab = vocab
        template = llm.metadata.get("tokenizer.chat_template") or GEMMA3_TEMPLATE
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=vocab.eos_text, bos_token=vocab.bos_text
        )

    def render(self, messages: tuple[Message, ...]) -> str:
        """The prompt text, ending with the opening of the assistant's turn."""
        turns = [_template_message(t) for t in normalise(messages)]
        try:
            return str(self._formatter(messages=turns).prompt)
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise InvalidRequest(
                f"chat template rejected the messages: {exc}", param="messages"
            ) from exc

    def tokens(self, messages: tuple[Message, ...]) -> list[int]:
        """The prompt as token ids, exactly as the model will read it."""
        text = self.render(messages)
        # The template writes the BOS text itself; parse it as the special token.
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if self._vocab.add_bos and tokens[:1] != [self._vocab.bos]:
            tokens.insert(0, self._vocab.bos)
        return tokens


def normalise(messages: tuple[Message, ...]) -> list[_Turn]:
    """System first, then strictly alternating user/assistant turns."""
    system = [_content(m) for m in messages if m.role in ("system", "developer")]
    turns: list[_Turn] = []
    for message in messages:
        if message.role not in ("system", "developer"):
            _append(turns, _Turn(_role(message), _content(message)))
    if not turns or turns[0].role != "user":
        turns.insert(0, _Turn("user", ""))  # templates expect a user turn first
    head = [_Turn("system", "\n\n".join(system))] if system else []
    return head + turns


def _template_message(turn: _Turn) -> ChatCompletionRequestMessage:
    # `normalise` leaves only the roles these typed dicts allow.
    return cast(ChatCompletionRequestMessage, {"role": turn.role, "content": turn.content})


def _append(turns: list[_Turn], turn: _Turn) -> None:
    """Merge into the previous turn when the role repeats, so roles alternate."""
    if turns and turns[-1].role == turn.role:
        turns[-1] = _Turn(turn.role, f"{turns[-1].content}\n\n{turn.content}")
    else:
        turns.append(turn)


def _role(message: Message) -> str:
    if message.role in ("user", "tool"):
        return "user"  # tool results reach the model as user turns, as Qwen's template does
    if message.role == "assistant":
        return "assistant"
    raise InvalidRequest(f"unknown message role {message.role!r}", param="messages")


def _content(message: Message) -> str:
    _reject_non_text(message)
    if message.role == "tool":
        return result_text(message)
    if not message.tool_calls:
        return message.text()
    return "\n".join([message.text(), call_text(message.tool_calls)]).strip("\n")


def _reject_non_text(message: Message) -> None:
    """The model reads text only; dropping images or audio silently would mislead."""
    if isinstance(message.content, tuple):
        kinds = {p.type for p in message.content} - _TEXT_PARTS
        if kinds:
            raise InvalidRequest(
                f"the local model accepts text only, not {', '.join(sorted(kinds))}",
                param="messages",
                code="unsupported_content",
            )
