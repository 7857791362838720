"""Signing-key rotation: a next key per algorithm, and when each key started, stopped, retires or was revoked.

Revision ID: 025f0cee0584
Revises: 4685070694bf
Create Date: 2026-12-01 17:55:31.393703
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import identity.store.models


revision: str = '025f0cee0584'
down_revision: str | None = '4685070694bf'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('signing_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_slot', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('activated_at', identity.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rotated_at', identity.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retire_at', identity.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', identity.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint('uq_signing_key_next_slot', ['next_slot'])



def downgrade() -> None:
    with op.batch_alter_table('signing_key', schema=None) as batch_op:
        batch_op.drop_constraint('uq_signing_key_next_slot', type_='unique')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('retire_at')
        batch_op.drop_column('rotated_at')
        batch_op.drop_column('activated_at')
        batch_op.drop_column('next_slot')

