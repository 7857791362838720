"""config version: the counter that keeps every instance's cached tenant configuration current

Revision ID: c0f1a9e5d2b7
Revises: e0704e153410
Create Date: 2026-12-01 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c0f1a9e5d2b7'
down_revision: str | None = 'e0704e153410'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table('config_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(table, [{'id': 1, 'version': 1}])


def downgrade() -> None:
    op.drop_table('config_version')
