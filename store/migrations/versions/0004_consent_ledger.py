"""The consent ledger (what each worker agreed to: licence version, time, language, channel)
and the tombstones of workers who sent STOP or DELETE

Revision ID: 0004_consent
Revises: 0004_vault
Create Date: 2026-12-02 15:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_consent"
down_revision: str | Sequence[str] | None = "0004_vault"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two new tables. Workers enrolled before have no ledger row: their agreement is the one
    ``workers.consented_at`` records, to the first licence version (the hop takes a cached
    profile without a version for one that agreed to "1")."""
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("licence", sa.String(length=32), nullable=False),
        sa.Column("agreed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("event_id", name=op.f("uq_consents_event_id")),
    )
    op.create_index(op.f("ix_consents_pseudonym"), "consents", ["pseudonym"], unique=False)
    op.create_index(op.f("ix_consents_key_id"), "consents", ["key_id"], unique=False)
    op.create_table(
        "tombstones",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_tombstones")),
    )
    op.create_index(op.f("ix_tombstones_key_id"), "tombstones", ["key_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_tombstones_key_id"), table_name="tombstones")
    op.drop_table("tombstones")
    op.drop_index(op.f("ix_consents_key_id"), table_name="consents")
    op.drop_index(op.f("ix_consents_pseudonym"), table_name="consents")
    op.drop_table("consents")
