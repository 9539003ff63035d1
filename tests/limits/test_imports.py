"""The Redis client is imported only when a limiter uses it: without `redis_url` no
process pays for it."""

from __future__ import annotations

from tests.imports import loaded_after


def test_the_in_process_limiter_imports_no_redis() -> None:
    code = "from server.limits.build import build_limiter\nbuild_limiter(None)"
    assert loaded_after(code, ["redis"]) == []
