"""What a template must be before it is written; each refusal is a 400 naming the field.

The messages and default parameters are checked with the chat request's own
validation (`server.pipeline.convert`), so a template that is stored can be used.
"""

from __future__ import annotations

import re
import uuid

from server.errors import InvalidRequest
from server.pipeline import convert
from server.templates import slots
from tokenwire.chat.v1 import chat_pb2, message_pb2, parameters_pb2
from tokenwire.templates.v1 import templates_pb2

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_MESSAGES = 256
MAX_VARIABLES = 64
MAX_TEXT = 1024


def template(t: templates_pb2.Template) -> None:
    """Refuse a template that could not be stored or used."""
    name(t.name)
    if not t.messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    if len(t.messages) > MAX_MESSAGES:
        raise InvalidRequest(f"'messages' takes at most {MAX_MESSAGES}.", param="messages")
    convert.messages(t.messages)
    _variables(t)
    _short(t.description, "description")
    _short(t.model, "model")
    _parameters(t.parameters)


def name(value: str) -> None:
    if not NAME.fullmatch(value) or _is_uuid(value):
        raise InvalidRequest(
            "'name' must be 1 to 128 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit, and must not be a UUID.",
            param="name",
        )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _variables(t: templates_pb2.Template) -> None:
    if len(t.variables) > MAX_VARIABLES:
        raise InvalidRequest(f"'variables' takes at most {MAX_VARIABLES}.", param="variables")
    seen: set[str] = set()
    for i, v in enumerate(t.variables):
        if not slots.NAME.fullmatch(v.name):
            raise InvalidRequest(
                f"'variables[{i}].name' must be letters, digits or '_' (at most 64), "
                "not starting with a digit.",
                param=f"variables[{i}].name",
            )
        if v.name in seen:
            raise InvalidRequest(
                f"Variable '{v.name}' is declared twice.", param=f"variables[{i}].name"
            )
        seen.add(v.name)
    for slot in slots.names_in(t.messages):
        if slot not in seen:
            raise InvalidRequest(
                f"The placeholder {{{{{slot}}}}} is not declared in 'variables'.",
                param="variables",
            )


def _short(value: str, param: str) -> None:
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"'{param}' is longer than {MAX_TEXT} characters.", param=param)


def _parameters(parameters: parameters_pb2.GenerationParameters) -> None:
    probe = chat_pb2.CreateChatCompletionRequest(parameters=parameters)
    probe.messages.add(role=message_pb2.ROLE_USER, content_text="probe")
    try:
        convert.generation_request(probe, "probe")
    except InvalidRequest as e:
        raise InvalidRequest(
            f"Invalid default parameters: {e.message}", param=f"parameters.{e.param}"
        ) from None
