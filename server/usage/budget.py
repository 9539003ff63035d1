"""`BudgetStage`: a key whose budget is spent gets 402; each request's cost is charged after.

The check and the charge are not one transaction: requests already running
when the budget runs out still finish and are charged, so spend can pass the
budget by what those cost. The ledger's charge is one atomic `UPDATE`, so no
charge from any replica is lost. A charge the database cannot take (it is
away) is owed: added to the key's next charge and counted by the budget check
meanwhile; only a process that dies owing it loses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from server.errors import PaymentRequired
from server.pipeline.context import RequestContext, UsageRecord

log = logging.getLogger("tokenwire.usage")


@dataclass(frozen=True, slots=True)
class Budget:
    limit_usd: float | None  # None: no budget
    spent_usd: float

    @property
    def remaining_usd(self) -> float | None:
        return None if self.limit_usd is None else max(0.0, self.limit_usd - self.spent_usd)


class Ledger(Protocol):
    async def budget(self, key_id: str) -> Budget | None:
        """The key's budget and spend; None for an unknown key."""
        ...

    async def charge(self, key_id: str, usd: float) -> None:
        """Add `usd` to the key's spend."""
        ...


class BudgetStage:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._owed: dict[str, float] = {}  # key id -> USD of its charges the ledger missed

    async def before(self, ctx: RequestContext) -> None:
        key_id = ctx.principal.key_id
        budget = await self._ledger.budget(key_id) if key_id else None
        if key_id is None or budget is None or budget.limit_usd is None:
            return
        limit, spent = budget.limit_usd, budget.spent_usd + self._owed.get(key_id, 0.0)
        ctx.headers["x-tokenwire-budget-remaining-usd"] = f"{max(0.0, limit - spent):.6f}"
        if spent >= limit:
            raise PaymentRequired(
                f"This API key has spent its budget of ${limit:.2f}.",
                code="budget_exceeded",
            )

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        key_id = record.key_id
        if key_id is None or (record.cost_usd <= 0 and key_id not in self._owed):
            return
        usd = record.cost_usd + self._owed.pop(key_id, 0.0)
        try:
            await self._ledger.charge(key_id, usd)
        except Exception:
            self._owed[key_id] = self._owed.get(key_id, 0.0) + usd  # others may owe too
            log.exception("could not charge %s for %s (owed)", key_id, record.request_id)
