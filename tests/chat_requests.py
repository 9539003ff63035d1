"""Chat requests for tests, written with OpenAI's flat parameter names."""

from __future__ import annotations

from typing import Any

from tokenwire.chat.v1 import chat_pb2, message_pb2, parameters_pb2

Request = chat_pb2.CreateChatCompletionRequest
GENERATION = frozenset(parameters_pb2.GenerationParameters.DESCRIPTOR.fields_by_name)


def chat_request(model: str, text: str, **fields: Any) -> Request:
    """One user turn for `model`; a field `GenerationParameters` has goes into `parameters`."""
    parameters = {k: fields.pop(k) for k in list(fields) if k in GENERATION}
    return Request(
        model=model,
        messages=[message_pb2.ChatMessage(role=message_pb2.ROLE_USER, content_text=text)],
        parameters=parameters_pb2.GenerationParameters(**parameters),
        **fields,
    )
