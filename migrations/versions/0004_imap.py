"""imap ledger: (mailbox, UIDVALIDITY, UID) of every message the IMAP reader stored

Revision ID: 0004
Revises: 0006
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('imap_ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sa.String(length=512), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_imap_ledger_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imap_ledger')),
    sa.UniqueConstraint('mailbox', 'uidvalidity', 'uid', name='uq_imap_ledger_mailbox_uid')
    )
    with op.batch_alter_table('imap_ledger', schema=None) as batch_op:
        batch_op.create_index('ix_imap_ledger_mailbox_state', ['mailbox', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('imap_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_imap_ledger_mailbox_state')
    op.drop_table('imap_ledger')
