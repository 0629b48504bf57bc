"""provider batch requests for the judge stage: the draft a judge request scores

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('provider_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('draft_id', BIGID, nullable=True))
        batch_op.create_foreign_key('fk_provider_requests_draft_id_drafts', 'drafts', ['draft_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('provider_requests', schema=None) as batch_op:
        batch_op.drop_constraint('fk_provider_requests_draft_id_drafts', type_='foreignkey')
        batch_op.drop_column('draft_id')
