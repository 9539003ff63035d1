"""A key's budget and spend on the keys table: the ledger `BudgetStage` checks and charges."""

from __future__ import annotations

from server.storage.database import Database
from server.usage.budget import Budget


class KeyLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def budget(self, key_id: str) -> Budget | None:
        row = await self._db.fetchrow(
            "SELECT budget_usd, spent_usd FROM api_keys WHERE id = ?", key_id
        )
        if row is None:
            return None
        return Budget(row["budget_usd"], float(row["spent_usd"]))

    async def charge(self, key_id: str, usd: float) -> None:
        """Adds `usd` in one statement, so concurrent charges from any replica all count."""
        await self._db.execute(
            "UPDATE api_keys SET spent_usd = spent_usd + ? WHERE id = ?", float(usd), key_id
        )
