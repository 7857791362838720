"""users: given_name and family_name (OIDC profile claims; HR systems provision them through the Management API)

Revision ID: 7c3d1e8a4f52
Revises: 5b7e2d9c41a3
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '7c3d1e8a4f52'
down_revision: str | None = '5b7e2d9c41a3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('given_name', sa.String(length=150), nullable=True))
        batch_op.add_column(sa.Column('family_name', sa.String(length=150), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('family_name')
        batch_op.drop_column('given_name')
