"""Custom ID-token claims kept for ``/userinfo`` (one row per access token that had any; expired rows pruned)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.clock import Clock, now_utc
from identity.store import users as user_queries
from identity.store.models import UserinfoClaimsRow

__all__ = ["SqlUserinfoClaims"]


class SqlUserinfoClaims:
    """`identity.oauth2.interfaces.UserinfoClaimsStore` over the database."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    async def remember(self, jti: str, user_id: str, claims: Mapping[str, Any], expires_at: float) -> None:
        """Keep ``claims`` for the access token ``jti`` until it expires."""
        found = await user_queries.by_user_id(self.session, user_id)
        if found is None or found[0].id is None:
            return
        user_pk = found[0].id
        now = now_utc(self.clock)
        await self.session.execute(
            delete(UserinfoClaimsRow).where(
                col(UserinfoClaimsRow.user_pk) == user_pk, col(UserinfoClaimsRow.expires_at) < now
            )
        )
        self.session.add(
            UserinfoClaimsRow(
                jti=jti, user_pk=user_pk, claims=dict(claims), expires_at=datetime.fromtimestamp(expires_at, UTC)
            )
        )
        await self.session.flush()  # committed by the request's unit of work

    async def recall(self, jti: str) -> dict[str, Any]:
        """The claims kept for ``jti`` (empty when none)."""
        row = (await self.session.execute(select(UserinfoClaimsRow).where(col(UserinfoClaimsRow.jti) == jti))).scalar()
        await self.session.commit()
        return dict(row.claims) if row is not None else {}
