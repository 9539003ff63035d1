"""The one estimate of tokens where no tokenizer is at hand (middle-out, memory budgets, usage of
an upstream that reports none, a cancelled stream): about 4 characters a token, a rough rule
for English text with BPE tokenizers."""

from __future__ import annotations

from server.providers.base import GenerationRequest, Message, Usage

CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    """The tokens `chars` characters of text come to, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def estimated_usage(request: GenerationRequest, generated_chars: int) -> Usage:
    """A `Usage` counted here, roughly, for a generation no one counted."""
    prompt = sum(len(_message_text(m)) for m in request.messages)
    prompt += sum(len(f"{t.name}{t.description or ''}{t.parameters or ''}") for t in request.tools)
    return Usage(
        prompt_tokens=estimate_tokens(prompt),
        completion_tokens=estimate_tokens(generated_chars),
        estimated=True,
    )


def _message_text(message: Message) -> str:
    calls = "".join(c.name + c.arguments for c in message.tool_calls)
    return message.text() + calls
