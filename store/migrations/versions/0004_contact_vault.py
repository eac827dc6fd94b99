"""Contact vault: workers' numbers as AES-GCM ciphertext for those who opted in, and which
master key encrypts each pseudonym key (for ``keys rotate-master``)

Revision ID: 0004_vault
Revises: 0003
Create Date: 2026-12-02 15:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_vault"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The column is added in place (no batch mode: SQLite would rebuild pseudonym_keys, which
    workers and contacts refer to). Existing keys name no master key yet: the first
    ``keys rotate-master`` (or nothing, as long as the key stays) finds out which opens them."""
    op.add_column("pseudonym_keys", sa.Column("master_key_id", sa.String(length=16), nullable=True))
    op.create_table(
        "contacts",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=16), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["pseudonym_keys.id"],
            name=op.f("fk_contacts_key_id_pseudonym_keys"),
        ),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_contacts")),
    )
    op.create_index(op.f("ix_contacts_key_id"), "contacts", ["key_id"], unique=False)
    op.create_index(op.f("ix_contacts_master_key_id"), "contacts", ["master_key_id"], unique=False)


def downgrade() -> None:
    """The vault's ciphertext goes with the table: downgrading forgets every stored contact."""
    op.drop_index(op.f("ix_contacts_master_key_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_key_id"), table_name="contacts")
    op.drop_table("contacts")
    op.drop_column("pseudonym_keys", "master_key_id")
