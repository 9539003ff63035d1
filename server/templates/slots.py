"""`{{slot}}` placeholders: finding them, binding variables, rendering by literal substitution.

A placeholder is `{{name}}` (spaces inside the braces allowed), `name` being
letters, digits and `_`, not starting with a digit. Anything else in double
braces is plain text. Rendering is one pass over the template text: each
placeholder is replaced by its value as is, and values are never scanned
again, so a value holding `{{other}}`, `\\1` or `%s` arrives verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from server.errors import Unprocessable
from tokenwire.chat.v1 import message_pb2
from tokenwire.templates.v1 import templates_pb2

SLOT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def texts(message: message_pb2.ChatMessage) -> Iterator[str]:
    """The text of a message that may hold placeholders: its content and text parts."""
    if message.WhichOneof("content") == "content_text":
        yield message.content_text
    for part in message.content_parts.parts:
        if part.HasField("text"):
            yield part.text


def names_in(messages: Sequence[message_pb2.ChatMessage]) -> list[str]:
    """The placeholder names the messages use, in order of first use."""
    found = (m.group(1) for msg in messages for text in texts(msg) for m in SLOT.finditer(text))
    return list(dict.fromkeys(found))


def render_text(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value, literally."""
    return SLOT.sub(lambda m: values[m.group(1)], text)


def render(message: message_pb2.ChatMessage, values: Mapping[str, str]) -> message_pb2.ChatMessage:
    """A copy of `message` with its placeholders filled."""
    out = message_pb2.ChatMessage()
    out.CopyFrom(message)
    if out.WhichOneof("content") == "content_text":
        out.content_text = render_text(out.content_text, values)
    for part in out.content_parts.parts:
        if part.HasField("text"):
            part.text = render_text(part.text, values)
    return out


def bind(template: templates_pb2.Template, given: Mapping[str, str]) -> dict[str, str]:
    """Every declared variable's value: given, else its default; 422 naming any misfit."""
    declared = {v.name: v for v in template.variables}
    for name in sorted(given):
        if name not in declared:
            raise Unprocessable(
                f"Variable '{name}' is not declared by template '{template.name}'.",
                param=f"variables.{name}",
                code="undeclared_variable",
            )
    values: dict[str, str] = {}
    for name, variable in declared.items():
        if name in given:
            values[name] = given[name]
        elif variable.HasField("default_value"):
            values[name] = variable.default_value
        else:
            raise Unprocessable(
                f"Variable '{name}' is required by template '{template.name}' and has no default.",
                param=f"variables.{name}",
                code="missing_variable",
            )
    return values
