"""privacy: erased receipts, redacted inquiries, secrets

Receipts of erased messages keep the hash of what arrived (sha256, erased_at); inquiries that
retention redacted say when (redacted_at); `secrets` holds the key for keyed hashes when
INTAKE_SECRET_KEY is unset (intake/keys.py). The hostile branch's 0003 creates the same `secrets`
table: on merge, keep one create_table.

Revision ID: 0006
Revises: 0007
Create Date: 2026-12-01 21:29:22.154476
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
# Chained after the head of main when merged here (0007, groups); the lead re-chains on merge.
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_secrets')),
    sa.UniqueConstraint('name', name=op.f('uq_secrets_name'))
    )
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redacted_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
        batch_op.drop_column('sha256')

    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.drop_column('redacted_at')

    op.drop_table('secrets')
