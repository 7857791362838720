"""Load the stored rule pipeline at start: a rule whose handler does not import stops the start, with its name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import Clock
from identity.rules.pipeline import Rule, RuleLoadError, RulesEngine, load_handler
from identity.store.models import RuleRow
from identity.store.rules import all_rules

__all__ = ["load_rules", "rules_fingerprint", "rules_from_rows"]


def rules_fingerprint(rows: Sequence[RuleRow]) -> tuple[Any, ...]:
    """What the pipeline is made of: equal fingerprints mean the same pipeline."""
    return tuple(
        (row.name, row.handler, row.enabled, row.position, row.timeout_seconds, json.dumps(row.config, sort_keys=True))
        for row in rows
    )


async def load_rules(session: AsyncSession) -> RulesEngine:
    """The enabled rules, in order, with their handlers imported."""
    rows = await all_rules(session)
    await session.commit()
    return rules_from_rows(rows)


def rules_from_rows(rows: Sequence[RuleRow], clock: Clock | None = None) -> RulesEngine:
    """The pipeline of these rule rows (the disabled ones left out), telling rules the time by ``clock``."""
    rules = []
    for row in rows:
        if not row.enabled:
            continue
        try:
            handler = load_handler(row.handler)
        except RuleLoadError as exc:
            raise RuleLoadError(f"rule {row.name!r}: {exc}") from exc
        rules.append(Rule(name=row.name, handler=handler, timeout=row.timeout_seconds, config=dict(row.config)))
    return RulesEngine(rules, clock)
