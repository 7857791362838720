"""refresh_token: auth_time, when the user proved the family's factors (issue 9: rules see it on refresh)

Nullable: families started before this revision have none, and fall back to their first token's ``created_at``.

Revision ID: 3a9d6c2e7b14
Revises: fe81a86a6b85
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import identity.store.models


revision: str = '3a9d6c2e7b14'
down_revision: str | None = 'fe81a86a6b85'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_time', identity.store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.drop_column('auth_time')
