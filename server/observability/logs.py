"""Logging set-up: plain text (the default) or one JSON object per line (`--log-format
json`), and the access log, one line per chat request (`--access-log`, at INFO).

A JSON line holds time, level, logger, message, the request id of the call being served
(whichever logger wrote it) and the fields a line passes in `extra` (`FIELDS`): never a
key's secret, only its id.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from server.pipeline.context import UsageRecord
from server.rpc.boundary import CALL

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a line may carry beyond the basics, as `extra={...}` names it.
FIELDS = (
    "organization",
    "key_id",
    "model",
    "provider",
    "status",
    "http_status",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "streamed",
)
ACCESS = logging.getLogger("tokenwire.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = CALL.get(None)
        request_id = getattr(record, "request_id", None) or (call.request_id if call else None)
        if request_id:
            line["request_id"] = request_id
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(level: str, log_format: str) -> None:
    """The root logger at `level`, writing `text` or `json` lines to stderr."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def access(record: UsageRecord) -> None:
    """The access-log line of one finished chat request."""
    ACCESS.info(
        "%s %s %s %d %.1fms",
        "stream" if record.streamed else "chat",
        record.model_requested or "-",
        record.status,
        record.http_status,
        record.latency_ms,
        extra={
            "request_id": record.request_id,
            "organization": record.organization_id,
            "key_id": record.key_id,
            "model": record.model,
            "provider": record.provider,
            "status": record.status,
            "http_status": record.http_status,
            "latency_ms": round(record.latency_ms, 3),
            "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 3),
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "streamed": record.streamed,
        },
    )
