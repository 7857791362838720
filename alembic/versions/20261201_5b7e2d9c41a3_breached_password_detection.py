"""breached password detection: the tenant's Auth0 ``breached_password_detection`` object (off by default)

Revision ID: 5b7e2d9c41a3
Revises: c0f1a9e5d2b7
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '5b7e2d9c41a3'
down_revision: str | None = 'c0f1a9e5d2b7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('breached_password_detection', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.drop_column('breached_password_detection')
