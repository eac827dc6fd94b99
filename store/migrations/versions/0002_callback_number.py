"""workplaces.callback_number: the service's own number a worker rings for a free callback

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the optional callback number, unique through a unique index. Not a constraint in
    batch mode: SQLite would rebuild the table, and dropping the old one with foreign keys on
    would cascade to every worker, answer, grant and token of the workplaces."""
    op.add_column("workplaces", sa.Column("callback_number", sa.String(length=20), nullable=True))
    op.create_index(
        op.f("ix_workplaces_callback_number"), "workplaces", ["callback_number"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_workplaces_callback_number"), table_name="workplaces")
    # Not batch mode either (it would rebuild the table): SQLite >= 3.35 drops a column in place.
    op.drop_column("workplaces", "callback_number")
