"""hot path indexes: inquiries newest first, and by their Slack card (issue 11)

Found by tests/test_query_plans.py, which explains every statement the hot paths run:
`intake list` (ORDER BY received_at DESC, id DESC LIMIT n) and the card lookup of every card
render (WHERE (slack_channel, slack_ts) IN ...) read all of `inquiries`.

Revision ID: 0008
Revises: 0004
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0008'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.create_index('ix_inquiries_received_id', ['received_at', 'id'], unique=False)
        batch_op.create_index('ix_inquiries_slack_card', ['slack_channel', 'slack_ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inquiries', schema=None) as batch_op:
        batch_op.drop_index('ix_inquiries_slack_card')
        batch_op.drop_index('ix_inquiries_received_id')
