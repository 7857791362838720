"""What the tenant configuration endpoints share (connections, clients, resource servers, settings, guardian).

Each calls `identity.tenant_admin.TenantAdmin`, which applies the tenant file's checks, so the API and ``identity
tenant apply`` accept exactly the same configurations.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar.params import QueryParameter
from msgspec import UNSET, Struct
from sqlalchemy.ext.asyncio import AsyncSession

from identity.tenant_admin import TenantAdmin
from identity.web.deps import Services

__all__ = ["From", "config_admin", "sent_members"]

From = Annotated[str | None, QueryParameter(name="from", description="The checkpoint: the last id seen.")]


def config_admin(services: Services, db: AsyncSession) -> TenantAdmin:
    """The tenant configuration on this request's session."""
    return TenantAdmin(db, issuer=services.settings.issuer)


def sent_members(data: Struct) -> dict[str, Any]:
    """The members a PATCH body set."""
    return {field: getattr(data, field) for field in type(data).__struct_fields__ if getattr(data, field) is not UNSET}
