"""sla: response targets on inquiries (first_response_due, response_due)

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01 21:31:10.907119
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
# Chained after main's 0002_outbox when main was merged into the sla branch (it was 0001).
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_response_due', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('response_due', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_inquiries_status_response_due', ['status', 'response_due'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.drop_index('ix_inquiries_status_response_due')
        batch_op.drop_column('response_due')
        batch_op.drop_column('first_response_due')
