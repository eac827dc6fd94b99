"""Key rotation: when each key takes over, workers' rotation seeds, answers superseded at a
grace migration, and the pseudonyms that migrated

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Columns added in place (no batch mode: SQLite would rebuild the tables, and dropping the
    old ones with foreign keys on would cascade). Every existing key took over when it was
    made; no answer is superseded yet."""
    op.add_column(
        "pseudonym_keys", sa.Column("activates_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE pseudonym_keys SET activates_at = created_at")
    op.create_index(
        "uq_pseudonym_keys_one_current",
        "pseudonym_keys",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'current'"),
        sqlite_where=sa.text("status = 'current'"),
    )
    op.add_column("workers", sa.Column("seed", sa.BigInteger(), nullable=True))
    op.add_column(
        "answers",
        sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "answers",
        sa.Column("carried", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "migrated_pseudonyms",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("moved_to", sa.String(length=64), nullable=False),
        sa.Column("moved_to_key", sa.Integer(), nullable=False),
        sa.Column("migrated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_migrated_pseudonyms")),
    )
    op.create_index(
        op.f("ix_migrated_pseudonyms_key_id"), "migrated_pseudonyms", ["key_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_migrated_pseudonyms_key_id"), table_name="migrated_pseudonyms")
    op.drop_table("migrated_pseudonyms")
    op.drop_column("answers", "carried")
    op.drop_column("answers", "superseded")
    op.drop_column("workers", "seed")
    op.drop_index("uq_pseudonym_keys_one_current", table_name="pseudonym_keys")
    op.drop_column("pseudonym_keys", "activates_at")
