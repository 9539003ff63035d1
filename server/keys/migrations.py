"""Schema of organizations and API keys (component `keys`).

Times are Unix seconds (DOUBLE PRECISION); `allowed_models` and
`allowed_agents` are JSON lists (NULL: any); a NULL limit is no limit.
`handle` is the public part of the key that finds its row; `secret_hash` is
SHA-256 of the whole key.
"""

from __future__ import annotations

from server.storage.migrations import Migration

MIGRATIONS = (
    Migration(
        "keys",
        1,
        """
CREATE TABLE organizations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL,
  request_limit INTEGER,
  token_limit BIGINT,
  limit_window INTEGER NOT NULL DEFAULT 60
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  organization_id TEXT NOT NULL REFERENCES organizations (id),
  name TEXT NOT NULL,
  handle TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  default_model TEXT,
  allowed_models TEXT,
  request_limit INTEGER,
  token_limit BIGINT,
  limit_window INTEGER NOT NULL DEFAULT 60,
  budget_usd DOUBLE PRECISION,
  spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
  expires_at DOUBLE PRECISION,
  created_at DOUBLE PRECISION NOT NULL,
  revoked_at DOUBLE PRECISION,
  rotated_at DOUBLE PRECISION
);
CREATE INDEX api_keys_organization ON api_keys (organization_id, created_at)
""",
    ),
    Migration("keys", 2, "ALTER TABLE api_keys ADD COLUMN allowed_agents TEXT"),
)
