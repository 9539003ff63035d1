"""The `response-healing` plugin: a JSON answer that does not parse is repaired, then
checked against the request's schema.

Applies to `response_format` `json_object` and `json_schema` only. Repair (code fences,
text around the JSON, truncation, single quotes, trailing commas) is `json-repair`'s;
the schema check is `jsonschema`'s. Each choice says what happened in its `healing`:
`valid` (as given), `healed` (a whole completion's content is replaced by the repaired
JSON; a stream, already sent, carries it in `healing.content`) or `unhealable` (the
answer stays exactly as the model gave it, with the reason in `healing.detail`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidRequest
from server.pipeline.convert import MAX_JSON_DEPTH, json_depth
from tokenwire.chat.v1 import chat_pb2, message_pb2

_SCHEMA_PARAM = "response_format.json_schema.schema"


@dataclass(frozen=True, slots=True)
class Verdict:
    status: chat_pb2.HealingStatus.ValueType
    text: str  # what the choice should say: the repaired JSON, or the answer as given
    detail: str | None = None


class Healer:
    """Heals the answers of one request whose output must be JSON (matching `schema`)."""

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self._validator = _validator(schema) if schema is not None else None

    def verdict(self, text: str) -> Verdict:
        if json_depth(text) > MAX_JSON_DEPTH:  # the parsers would recurse past their limit
            why = f"nested more than {MAX_JSON_DEPTH} levels deep"
            return Verdict(chat_pb2.HEALING_STATUS_UNHEALABLE, text, why)
        try:
            value = json.loads(text)
        except ValueError as error:
            return self._repaired(text, f"not valid JSON: {error}")
        problem = self._problem(value)
        if problem is None:
            return Verdict(chat_pb2.HEALING_STATUS_VALID, text)
        return Verdict(chat_pb2.HEALING_STATUS_UNHEALABLE, text, problem)

    def _repaired(self, text: str, why: str) -> Verdict:
        import json_repair  # on first use, as jsonschema below: see `_validator`

        value = json_repair.repair_json(text, return_objects=True)
        if value == "" or not isinstance(value, dict | list):  # nothing JSON-like in it
            return Verdict(chat_pb2.HEALING_STATUS_UNHEALABLE, text, why)
        problem = self._problem(value)
        if problem is not None:
            return Verdict(chat_pb2.HEALING_STATUS_UNHEALABLE, text, f"{why}; repaired, {problem}")
        healed = json.dumps(value, ensure_ascii=False)
        return Verdict(chat_pb2.HEALING_STATUS_HEALED, healed, why)

    def _problem(self, value: Any) -> str | None:
        """Why `value` is not an acceptable answer, or None."""
        if self._validator is None:
            return None if isinstance(value, dict) else "not a JSON object"
        from jsonschema import exceptions as schema_errors

        error = schema_errors.best_match(self._validator.iter_errors(value))
        return None if error is None else f"does not match the schema: {error.message}"

    # --- as a finisher (server.pipeline.finishers) --------------------------------------

    def whole(self, choice: chat_pb2.Choice) -> None:
        message = choice.message
        if not message.HasField("content") or message.tool_calls:
            return
        verdict = self.verdict(message.content)
        message.content = verdict.text
        _fill(choice.healing, verdict, with_text=False)

    def last(self, choice: chat_pb2.ChunkChoice, message: chat_pb2.ResponseMessage) -> None:
        if message.content and not message.tool_calls:  # as `whole`: calls are not the answer
            _fill(choice.healing, self.verdict(message.content), with_text=True)


def _fill(out: chat_pb2.Healing, verdict: Verdict, *, with_text: bool) -> None:
    out.status = verdict.status
    if verdict.detail is not None:
        out.detail = verdict.detail
    if with_text and verdict.status == chat_pb2.HEALING_STATUS_HEALED:
        out.content = verdict.text


def healer(request: chat_pb2.CreateChatCompletionRequest) -> Healer | None:
    """A healer when the request asks for JSON output, else None (nothing to heal)."""
    kind = request.parameters.response_format.type
    if kind == message_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return Healer(None)
    if kind != message_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        return None
    text = request.parameters.response_format.json_schema.schema
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"'{_SCHEMA_PARAM}' is nested too deeply.", param=_SCHEMA_PARAM)
    try:
        schema = json.loads(text) if text else {}
    except ValueError:
        raise InvalidRequest(f"'{_SCHEMA_PARAM}' is not valid JSON.", param=_SCHEMA_PARAM) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(f"'{_SCHEMA_PARAM}' must be a JSON object.", param=_SCHEMA_PARAM)
    return Healer(schema)


def _validator(schema: dict[str, Any]) -> Any:
    # Imported on first use: jsonschema and json_repair weigh ~4 MiB in every process that
    # imports them, most of which never heal an answer (the --workers supervisor included).
    from jsonschema import exceptions as schema_errors
    from jsonschema import validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError as error:
        raise InvalidRequest(
            f"'{_SCHEMA_PARAM}' is not a valid JSON Schema: {error.message}", param=_SCHEMA_PARAM
        ) from None
    return cls(schema)
