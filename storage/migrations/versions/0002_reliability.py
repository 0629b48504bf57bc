"""issue 10: queue reliability (attempt bases, follow-up/run uniqueness, leases, batch endpoint)

- drafts: a cache key is unique per record (records with identical content each get their own draft, the
  text reused from the first); ``shared_from_id`` names the draft whose text was reused.
- batches: the teacher endpoint the batch was made for (never the key), the follow-up's state, error and lease,
  and the spend of work the fence discarded.
- chunks: the estimated cost (USD, tokens) of the chunk's sub-batches in flight (hard budgets).
- builds/runs: at most one per batch follow-up; a run is claimed with a lease before training.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _drop_cache_key_unique() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("drafts_cache_key_key", "drafts", type_="unique")
        return
    # SQLite: the constraint has no name; a naming convention lets batch mode find it when it copies the table.
    with op.batch_alter_table("drafts", recreate="always", naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint("uq_drafts_cache_key", type_="unique")


def upgrade() -> None:
    _drop_cache_key_unique()
    with op.batch_alter_table("drafts") as batch_op:
        batch_op.add_column(sa.Column("shared_from_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                      nullable=True))
        batch_op.create_unique_constraint("uq_drafts_key_record", ["cache_key", "record_id"])
    with op.batch_alter_table("batches") as batch_op:
        batch_op.add_column(sa.Column("endpoint", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("followup_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("followup_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("followup_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("followup_lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("discarded_usd", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("discarded_tokens", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("chunks") as batch_op:
        batch_op.add_column(sa.Column("reserved_usd", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("reserved_tokens", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("builds") as batch_op:
        batch_op.create_index("uq_builds_batch", ["batch_id"], unique=True)
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("uq_runs_batch", ["batch_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_index("uq_runs_batch")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
    with op.batch_alter_table("builds") as batch_op:
        batch_op.drop_index("uq_builds_batch")
    with op.batch_alter_table("chunks") as batch_op:
        batch_op.drop_column("reserved_tokens")
        batch_op.drop_column("reserved_usd")
    with op.batch_alter_table("batches") as batch_op:
        for name in ("discarded_tokens", "discarded_usd",
                     "followup_lease_expires_at", "followup_owner", "followup_error", "followup_status", "endpoint"):
            batch_op.drop_column(name)
    with op.batch_alter_table("drafts") as batch_op:
        batch_op.drop_constraint("uq_drafts_key_record", type_="unique")
        batch_op.drop_column("shared_from_id")
        batch_op.create_unique_constraint("uq_drafts_cache_key", ["cache_key"])
