"""issue 16: what a batch learned about its teacher endpoint

The structured-output mode its requests really ran in (and why), the adaptive concurrency limit the
workers last reported and why it moved. The breaker's pause uses the batch's own status ("paused") and
status_reason, which hold the server's message.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("response_mode", sa.Text(), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("concurrency_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("concurrency_reason")
        batch.drop_column("concurrency_limit")
        batch.drop_column("response_mode")
