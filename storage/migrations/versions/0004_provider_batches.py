"""issue 14: provider batch jobs and their requests

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('provider_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=30), nullable=True),
    sa.Column('endpoint', sa.Text(), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('input_file_id', sa.String(length=200), nullable=True),
    sa.Column('provider_batch_id', sa.String(length=200), nullable=True),
    sa.Column('output_file_id', sa.String(length=200), nullable=True),
    sa.Column('error_file_id', sa.String(length=200), nullable=True),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('next_poll_at', TS, nullable=True),
    sa.Column('submitted_at', TS, nullable=True),
    sa.Column('expires_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider_batch_id')
    )
    op.create_index(op.f('ix_provider_jobs_batch_id'), 'provider_jobs', ['batch_id'], unique=False)
    op.create_index(op.f('ix_provider_jobs_state'), 'provider_jobs', ['state'], unique=False)
    op.create_table('provider_requests',
    sa.Column('id', BIGID, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('record_id', BIGID, nullable=False),
    sa.Column('custom_id', sa.String(length=100), nullable=False),
    sa.Column('cache_key', sa.String(length=64), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('body', JSON, nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('finished_at', TS, nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['provider_jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('custom_id')
    )
    op.create_index(op.f('ix_provider_requests_batch_id'), 'provider_requests', ['batch_id'], unique=False)
    op.create_index(op.f('ix_provider_requests_record_id'), 'provider_requests', ['record_id'], unique=False)
    op.create_index('ix_provider_requests_job_state', 'provider_requests', ['job_id', 'state'], unique=False)


def downgrade() -> None:
    op.drop_table('provider_requests')
    op.drop_table('provider_jobs')
