"""The MFA gate: whether a login that passed its first factor needs a second one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.oauth2.interfaces import User
from identity.store import mfa as queries
from identity.store.tenant import tenant_settings

__all__ = ["MFA_POLICIES", "MfaGate"]

MFA_POLICIES = ("never", "if-enrolled", "always")
"""The tenant's ``mfa_policy`` values."""


class MfaGate:
    """The tenant's MFA policy, applied to one user."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def required(self, user: User, *, forced: bool) -> bool:
        """Policy ``always``; ``if-enrolled`` and an active factor; or ``forced`` by the API or a rule."""
        policy = (await tenant_settings(self.session)).mfa_policy
        if forced or policy == "always":
            return True
        if policy == "never":
            return False
        return await queries.has_active_factor(self.session, user.user_id)
