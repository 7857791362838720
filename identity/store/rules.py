"""Queries for rules and the metadata they write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity import tenant_defaults as defaults
from identity.store.models import RuleRow, UserRow, utcnow

__all__ = ["SqlAppMetadata", "all_rules", "merge_app_metadata", "replace_rules"]


async def all_rules(session: AsyncSession) -> Sequence[RuleRow]:
    """Every rule, in pipeline order."""
    return (await session.execute(select(RuleRow).order_by(col(RuleRow.position), col(RuleRow.id)))).scalars().all()


async def replace_rules(session: AsyncSession, rules: Sequence[Mapping[str, Any]]) -> None:
    """Make the stored pipeline exactly ``rules``, in that order."""
    await session.execute(delete(RuleRow))
    for position, rule in enumerate(rules):
        session.add(
            RuleRow(
                name=rule["name"],
                handler=rule["handler"],
                enabled=rule.get("enabled", defaults.RULE_ENABLED),
                position=position,
                timeout_seconds=float(rule.get("timeout_seconds", defaults.RULE_TIMEOUT_SECONDS)),
                config=dict(rule.get("config", {})),
            )
        )


async def merge_app_metadata(session: AsyncSession, user_id: str, updates: Mapping[str, Any]) -> None:
    """Set keys of a user's ``app_metadata`` (read-modify-write in one transaction)."""
    row = (await session.execute(select(UserRow).where(col(UserRow.user_id) == user_id).with_for_update())).scalar()
    if row is None:
        return
    row.app_metadata = {**row.app_metadata, **updates}
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()  # committed by the request's unit of work


class SqlAppMetadata:
    """`identity.oauth2.interfaces.AppMetadataStore` over this request's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def merge(self, user_id: str, updates: Mapping[str, Any]) -> None:
        """Set keys of the user's ``app_metadata`` (committed with the request)."""
        await merge_app_metadata(self.session, user_id, updates)
