"""Tools for a local model: how they are described to it and the grammar its answer must follow.

The model is told about the tools in a system message and answers a call in
the format SmolLM2 was trained on for function calling:

    <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>

A GBNF grammar built from the tools' `parameters` schemas (llama-cpp-python's
JSON-schema converter) makes that the only possible answer for `required` and
a named `tool_choice`, so every call names a tool and its arguments validate
against that tool's schema. For `auto` the grammar has a second branch, free
text that does not start with `<`, and the model's first character chooses.
`parallel_tool_calls: false` allows exactly one call. The fixed spacing of the
format lets `tool_calls` read the calls as they stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from server.errors import InvalidRequest
from server.providers.base import Message, Tool, ToolCall, ToolChoice

OPEN, CLOSE, NL = "<tool_call>", "</tool_call>", "\n"
# Parameters an OpenAI tool may leave out: it takes no arguments.
_NO_PARAMETERS = {"type": "object", "properties": {}}

# SmolLM2's own function-calling prompt (as its Ollama template writes it).
_INSTRUCTIONS = """You are an expert in composing functions. You are given a question and a set \
of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the \
purpose.
If none of the functions can be used, point it out and refuse to answer.
If the given question lacks the parameters required by the function, also point it out.
You have access to the following tools:
<tools>{tools}</tools>
The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct.
<tool_call>[
{{"name": "func_name1", "arguments": {{"argument1": "value1", "argument2": "value2"}}}},
(more tool calls as required)
]</tool_call>"""


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What a request's tools add to generation: a system message and a grammar."""

    prompt: str
    grammar: str  # GBNF; its `root` allows only calls, or (auto) calls or text
    calls_only: bool


def plan_tools(
    tools: tuple[Tool, ...], choice: ToolChoice | None, parallel: bool | None
) -> ToolPlan | None:
    """The plan for a request's tools; None when it has none or `tool_choice` is `none`."""
    mode = choice.mode if choice is not None else "auto"
    if not tools or mode == "none":
        return None
    allowed = [
        (i, t) for i, t in enumerate(tools) if mode != "function" or t.name == _named(choice)
    ]
    calls = _calls_grammar(allowed, several=parallel is not False)
    prompt = _INSTRUCTIONS.format(tools=json.dumps([_described(t) for t in tools]))
    if mode == "function":
        prompt += f"\n\nCall the function {_named(choice)}."
    elif mode == "required":
        prompt += "\n\nYou must call at least one function."
    if mode == "auto":
        return ToolPlan(prompt, calls.replace("root ::=", "calls ::=") + _TEXT_OR_CALLS, False)
    return ToolPlan(prompt, calls, True)


# Text may not start with `<`: so the first character tells text from a call.
_TEXT_OR_CALLS = "\nroot ::= calls | [^<] [^\\x00]*\n"


def call_text(calls: tuple[ToolCall, ...]) -> str:
    """An assistant's earlier calls, written back as the model writes them."""
    written = [f'{{"name": {json.dumps(c.name)}, "arguments": {_arguments(c)}}}' for c in calls]
    return f"{OPEN}[{NL}{(',' + NL).join(written)}{NL}]{CLOSE}"


def result_text(message: Message) -> str:
    """A `tool` message, as SmolLM2 was trained to read one (results follow the calls' order)."""
    return f"<tool_response>\n{message.text()}\n</tool_response>"


def _arguments(call: ToolCall) -> str:
    try:
        return json.dumps(json.loads(call.arguments))
    except ValueError:  # a client may send back arguments that are not JSON: keep them as text
        return json.dumps(call.arguments)


def _named(choice: ToolChoice | None) -> str:
    return choice.function or "" if choice is not None else ""


def _described(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = _schema(tool)
    return {"type": "function", "function": function}


def _schema(tool: Tool) -> Any:
    return json.loads(tool.parameters) if tool.parameters else _NO_PARAMETERS


def _calls_grammar(tools: list[tuple[int, Tool]], several: bool) -> str:
    """GBNF for one call (or, when `several`, a list of calls) of these (index, tool)s."""
    # llama-cpp-python's converter is untyped.
    converter: Any = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    alternatives = [_call_rule(converter, i, t) for i, t in tools]
    more = ' (",\\n" call)*' if several else ""
    return "\n".join(
        [
            converter.format_grammar(),
            f"call ::= {' | '.join(alternatives)}",
            f"root ::= {_literal(OPEN + '[' + NL)} call{more} {_literal(NL + ']' + CLOSE)}",
        ]
    )


def _call_rule(converter: Any, index: int, tool: Tool) -> str:
    try:
        schema = converter.resolve_refs(_schema(tool), f"tool{index}")
        arguments = converter.visit(schema, f"tool{index}-arguments")
    except Exception as exc:  # the converter raises bare assertions for what it cannot express
        raise InvalidRequest(
            f"The parameters schema of tool '{tool.name}' cannot be enforced on the local "
            f"model: {exc or type(exc).__name__}",
            param=f"tools[{index}].function.parameters",
        ) from exc
    head = f'{{"name": {json.dumps(tool.name)}, "arguments": '
    return f'{_literal(head)} {arguments} "}}"'


def _literal(text: str) -> str:
    """A GBNF string literal: JSON's escapes are GBNF's (\\", \\\\, \\n, \\uXXXX)."""
    return json.dumps(text)
