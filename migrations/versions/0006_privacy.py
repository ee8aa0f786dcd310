"""privacy: erased receipts, redacted inquiries

Receipts of erased messages keep the hash of what arrived (sha256, erased_at); inquiries that
retention redacted say when (redacted_at). The `secrets` table its keyed hashes use comes from
0003 (sender authentication and ticket tags).

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01 21:29:22.154476
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
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
