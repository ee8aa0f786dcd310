"""transactional outbox: deliveries, inquiry versions, byte-identical dedupe keys

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('inquiry_id', sa.Integer(), nullable=True),
    sa.Column('args', sa.JSON(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('requested', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('warned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['inquiry_id'], ['inquiries.id'], name=op.f('fk_deliveries_inquiry_id_inquiries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('key', name=op.f('uq_deliveries_key'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_state_next_attempt', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_inquiry_id'), ['inquiry_id'], unique=False)

    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='0', nullable=False))

    # Inbound messages were deduplicated on their Message-ID; now only byte-identical bytes are a
    # duplicate. Identical bytes carry the same Message-ID, so no two rows can clash here.
    op.execute(
        "UPDATE messages SET dedupe_key = 'sha:' || sha256 "
        "WHERE direction = 'inbound' AND (dedupe_key LIKE 'mid:%' OR dedupe_key LIKE 'midsha:%')"
    )


def downgrade() -> None:
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.drop_column('version')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_inquiry_id'))
        batch_op.drop_index('ix_deliveries_state_next_attempt')
    op.drop_table('deliveries')
