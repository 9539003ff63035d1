"""`--log-format json` and `--access-log`: lines from a real `tokenwire serve`, parsed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.observability.logs import JsonFormatter, configure
from tests.serving import serving

BODY = {"model": "fake-echo", "messages": [{"role": "user", "content": "a b c"}]}


async def _line_of(stream: asyncio.StreamReader, logger: str) -> dict[str, Any]:
    """The next JSON line `logger` wrote (every line on the way must be JSON too)."""
    while line := await asyncio.wait_for(stream.readline(), timeout=30):
        if not line.startswith(b"{"):
            continue  # the start-up announcement is printed, not logged
        parsed: dict[str, Any] = json.loads(line)
        if parsed["logger"] == logger:
            return parsed
    raise AssertionError(f"no line from {logger}")


async def test_access_log_lines_are_json(tmp_path: Path) -> None:
    options = ("--log-level", "info", "--log-format", "json", "--access-log")
    async with serving(f"sqlite://{tmp_path / 'tw.db'}", *options) as served:
        url = f"http://127.0.0.1:{served.http_port}/v1/chat/completions"
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json=BODY, headers={"x-request-id": "req-log-1"})
        assert answer.status_code == 200
        assert served.process.stderr is not None
        line = await _line_of(served.process.stderr, "tokenwire.access")
    assert line["level"] == "info" and line["time"].endswith("Z")
    assert line["request_id"] == "req-log-1"
    assert line["model"] == "fake-echo" and line["provider"] == "fake"
    assert line["status"] == "ok" and line["http_status"] == 200
    assert line["latency_ms"] > 0 and line["completion_tokens"] > 0
    assert "authorization" not in json.dumps(line).lower()


def test_json_lines_carry_exceptions_and_extras() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tokenwire.test.json")
    log.addHandler(handler)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed %s", "here", extra={"model": "m", "status": "x"})
    finally:
        log.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert line["message"] == "failed here" and line["level"] == "error"
    assert line["logger"] == "tokenwire.test.json"
    assert line["model"] == "m" and line["status"] == "x"
    assert "ValueError: boom" in line["exception"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        configure("info", "xml")
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "m"})), str)
