"""`KeysOrOpen`: API keys once any exist; until then open, where running open is allowed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from server.keys.auth import KeyAuthenticator
from server.keys.store import KeyStore
from server.pipeline.context import CallInfo, OpenAuthenticator, Principal

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0


class KeysOrOpen:
    """An `Authenticator`: API keys once any exist; until then open, where that is allowed.

    While there are none, whether keys exist is asked at most once a second (a key
    made on another replica takes effect within that), and never again once there
    are. One ask runs at a time: callers wait for the first answer only; later
    asks run beside the requests, which meanwhile go on the last answer. Waiting
    on each re-ask would queue every concurrent request behind the database.
    """

    def __init__(
        self, keys: KeyStore, open_allowed: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keys = KeyAuthenticator(keys)
        self._open = OpenAuthenticator()
        self._store = keys
        self._clock = clock
        self._keyed = not open_allowed
        self._checked_at: float | None = None
        self._asking: asyncio.Future[None] | None = None

    def keyed(self) -> None:
        """A key was just made here: require keys from now on."""
        self._keyed = True

    async def authenticate(self, call: CallInfo) -> Principal:
        if not self._keyed:
            await self._recheck()
        if self._keyed:
            return await self._keys.authenticate(call)
        return await self._open.authenticate(call)

    async def _recheck(self) -> None:
        checked = self._checked_at
        if self._asking is None and (checked is None or self._clock() - checked >= RECHECK_SECONDS):
            self._asking = asyncio.ensure_future(self._ask())
        if self._asking is not None and self._checked_at is None:
            await asyncio.shield(self._asking)  # nothing known yet: wait for the first answer

    async def _ask(self) -> None:
        try:
            found = await self._store.has_keys()
            self._keyed = self._keyed or found  # a key made here meanwhile still counts
        except Exception:
            if self._checked_at is None:
                raise  # the callers waiting for the first answer get the error
            log.exception("could not check whether API keys exist; asking again shortly")
        finally:
            self._asking = None
        self._checked_at = self._clock()
