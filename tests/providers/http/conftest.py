"""Provider tests talk to a real mock upstream on 127.0.0.1 (see mock_upstream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.providers.http.mock_upstream import ACTIVE, MockUpstream


@pytest.fixture(scope="session")
async def mock_server() -> AsyncIterator[MockUpstream]:
    server = MockUpstream()
    await server.start()
    ACTIVE.append(server)
    yield server
    ACTIVE.clear()
    await server.close()


@pytest.fixture(autouse=True)
async def mock_upstream(mock_server: MockUpstream) -> AsyncIterator[MockUpstream]:
    """The running mock server; the sessions a test opened on it are closed after it."""
    yield mock_server
    await mock_server.close_sessions()
