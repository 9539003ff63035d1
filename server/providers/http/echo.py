"""The exact body sent upstream, for `debug.echo_upstream_body`, with credentials redacted.

A value under a key that names a credential (`api_key`, `authorization`, `token`,
`secret`, `password`…) and any string holding the upstream's API key are replaced
by `[REDACTED]`, however deep they sit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from server.providers.http.config import UpstreamConfig

REDACTED = "[REDACTED]"
_CREDENTIAL = re.compile(r"(api[-_]?key|authorization|token|secret|password)", re.IGNORECASE)
# `max_tokens`, `*_tokens` counts and the like name amounts, not credentials.
_NOT_CREDENTIAL = re.compile(r"tokens?$|_tokens?_", re.IGNORECASE)


def redacted_json(body: dict[str, Any], config: UpstreamConfig) -> str:
    return json.dumps(_redact(body, config.api_key), ensure_ascii=False)


def _redact(value: Any, key: str | None) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _names_credential(k) else _redact(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str) and key and key in value:
        return value.replace(key, REDACTED)
    return value


def _names_credential(name: str) -> bool:
    return bool(_CREDENTIAL.search(name)) and not _NOT_CREDENTIAL.search(name)
