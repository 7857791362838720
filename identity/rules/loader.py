"""Load the stored rule pipeline at start: a rule whose handler does not import stops the start, with its name."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.rules.pipeline import Rule, RuleLoadError, RulesEngine, load_handler
from identity.store.rules import all_rules

__all__ = ["load_rules"]


async def load_rules(session: AsyncSession) -> RulesEngine:
    """The enabled rules, in order, with their handlers imported."""
    rows = await all_rules(session)
    await session.commit()
    rules = []
    for row in rows:
        if not row.enabled:
            continue
        try:
            handler = load_handler(row.handler)
        except RuleLoadError as exc:
            raise RuleLoadError(f"rule {row.name!r}: {exc}") from exc
        rules.append(Rule(name=row.name, handler=handler, timeout=row.timeout_seconds, config=dict(row.config)))
    return RulesEngine(rules)
