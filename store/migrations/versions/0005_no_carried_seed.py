"""workers.seed dropped: the daily rotation's seed carried across a key rotation was the first 8
hex digits of the worker's old pseudonym, which linked the answers left under a destroyed key to
the worker's profile under the new one (SPEC §6). Dropping the column erases every seed carried
so far; the rotation goes on from each pseudonym's own seed.

Revision ID: 0005
Revises: 0004_consent
Create Date: 2026-12-02 15:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """In place (PostgreSQL, and SQLite since 3.35: no table rebuild, no cascade)."""
    op.drop_column("workers", "seed")


def downgrade() -> None:
    op.add_column("workers", sa.Column("seed", sa.BigInteger(), nullable=True))
