"""Schema of usage records (component `usage`): one row per request, every field kept.

`attempts` and `memory_ids` are JSON text; booleans are 0/1 integers so the
same SQL reads them on both dialects; `end_user` is the request's `user`
(a reserved word in PostgreSQL). The surrogate `id` keeps rows apart even
when clients reuse an `x-request-id`; `uid` (version 2) is unique per record
as the writer made it, so replaying a journal never stores a record twice
(rows from before it have none). `trace_id` and `trace` (version 3) keep the
request's `trace` (`server.usage.trace`).
"""

from __future__ import annotations

from server.storage.migrations import Migration

_COLUMNS = """
  request_id TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  key_id TEXT,
  organization_id TEXT,
  session_id TEXT,
  end_user TEXT,
  model_requested TEXT NOT NULL,
  model TEXT,
  provider TEXT,
  attempts TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  estimated INTEGER NOT NULL,
  cost_usd DOUBLE PRECISION NOT NULL,
  latency_ms DOUBLE PRECISION NOT NULL,
  ttft_ms DOUBLE PRECISION,
  status TEXT NOT NULL,
  http_status INTEGER NOT NULL,
  streamed INTEGER NOT NULL,
  cancelled INTEGER NOT NULL,
  template TEXT,
  template_version INTEGER,
  memory_ids TEXT NOT NULL
"""

_INDEXES = """;
CREATE INDEX usage_created ON usage_records (created);
CREATE INDEX usage_organization ON usage_records (organization_id, created);
CREATE INDEX usage_key ON usage_records (key_id, created);
CREATE INDEX usage_session ON usage_records (session_id);
CREATE INDEX usage_request ON usage_records (request_id)
"""

MIGRATIONS = (
    Migration(
        "usage",
        1,
        f"CREATE TABLE usage_records (\n  id INTEGER PRIMARY KEY,{_COLUMNS})" + _INDEXES,
        f"CREATE TABLE usage_records (\n  id BIGSERIAL PRIMARY KEY,{_COLUMNS})" + _INDEXES,
    ),
    Migration(
        "usage",
        2,
        "ALTER TABLE usage_records ADD COLUMN uid TEXT;\n"
        "CREATE UNIQUE INDEX usage_uid ON usage_records (uid)",
    ),
    Migration(
        "usage",
        3,
        "ALTER TABLE usage_records ADD COLUMN trace_id TEXT;\n"
        "ALTER TABLE usage_records ADD COLUMN trace TEXT;\n"
        "CREATE INDEX usage_trace ON usage_records (trace_id)",
    ),
)
