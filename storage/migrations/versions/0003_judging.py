"""issue 12: judgements, policies, follow-up gating

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('judgements',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('draft_id', BIGID, nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('cache_key', sa.String(length=64), nullable=False),
    sa.Column('backend', sa.String(length=50), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('rubric_name', sa.String(length=200), nullable=False),
    sa.Column('rubric_hash', sa.String(length=64), nullable=False),
    sa.Column('scores', JSON, nullable=False),
    sa.Column('overall', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('raw_text', sa.Text(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=False),
    sa.Column('latency_s', sa.Float(), nullable=False),
    sa.Column('is_fake', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['draft_id'], ['drafts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cache_key')
    )
    op.create_index(op.f('ix_judgements_draft_id'), 'judgements', ['draft_id'], unique=False)
    op.create_index(op.f('ix_judgements_batch_id'), 'judgements', ['batch_id'], unique=False)
    op.create_table('policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('approve_min', sa.Float(), nullable=False),
    sa.Column('reject_max', sa.Float(), nullable=False),
    sa.Column('require_no_flags', sa.Boolean(), nullable=False),
    sa.Column('judge_backend', sa.String(length=50), nullable=True),
    sa.Column('judge_model', sa.String(length=200), nullable=True),
    sa.Column('rubric_name', sa.String(length=200), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('batches') as batch_op:
        batch_op.add_column(sa.Column('followup_waiting_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('batches') as batch_op:
        batch_op.drop_column('followup_waiting_at')
    op.drop_table('policies')
    op.drop_index(op.f('ix_judgements_batch_id'), table_name='judgements')
    op.drop_index(op.f('ix_judgements_draft_id'), table_name='judgements')
    op.drop_table('judgements')
