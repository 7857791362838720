"""oob_code and mfa_send: codes sent by email, and each user's bucket of emails (issue 15)

Revision ID: 8d2f4b6a1c37
Revises: 3a9d6c2e7b14
Create Date: 2026-12-07 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import identity.store.models


revision: str = '8d2f4b6a1c37'
down_revision: str | None = '3a9d6c2e7b14'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'oob_code',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('oob_hash', sa.String(length=64), nullable=False),
        sa.Column('binding_hash', sa.String(length=64), nullable=False),
        sa.Column('user_pk', sa.Integer(), nullable=False),
        sa.Column('authenticator_pk', sa.Integer(), nullable=False),
        sa.Column('transaction_pk', sa.Integer(), nullable=False),
        sa.Column('created_at', identity.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', identity.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('consumed_at', identity.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['authenticator_pk'], ['authenticator.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['transaction_pk'], ['mfa_transaction.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_pk'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('oob_hash'),
    )
    with op.batch_alter_table('oob_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oob_code_authenticator_pk'), ['authenticator_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_oob_code_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oob_code_transaction_pk'), ['transaction_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_oob_code_user_pk'), ['user_pk'], unique=False)
    op.create_table(
        'mfa_send',
        sa.Column('user_pk', sa.Integer(), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['user_pk'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_pk'),
    )


def downgrade() -> None:
    op.drop_table('mfa_send')
    with op.batch_alter_table('oob_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oob_code_user_pk'))
        batch_op.drop_index(batch_op.f('ix_oob_code_transaction_pk'))
        batch_op.drop_index(batch_op.f('ix_oob_code_expires_at'))
        batch_op.drop_index(batch_op.f('ix_oob_code_authenticator_pk'))
    op.drop_table('oob_code')
