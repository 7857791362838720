"""first-party apps: the MFA transaction store also keeps auth_sessions and authorization codes (issue 15)

``kind`` tells the three apart (existing rows are mfa_tokens); a code carries its PKCE challenge, acr and auth_time,
and the refresh-token family it was redeemed for.

Revision ID: fe81a86a6b85
Revises: 7c3d1e8a4f52
Create Date: 2026-12-07 02:36:14.270875
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import identity.store.models


revision: str = 'fe81a86a6b85'
down_revision: str | None = '7c3d1e8a4f52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('mfa_transaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=24), server_default='mfa_token', nullable=False))
        batch_op.add_column(sa.Column('code_challenge', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('acr', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('auth_time', identity.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('family_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mfa_transaction', schema=None) as batch_op:
        batch_op.drop_column('family_id')
        batch_op.drop_column('auth_time')
        batch_op.drop_column('acr')
        batch_op.drop_column('code_challenge')
        batch_op.drop_column('kind')
