"""accounts leave room in each page, so that a sync's update is a HOT update

Every sync rewrites its account's row (token, state, last sync). None of those columns is
indexed, so PostgreSQL can update the row in place of its page (a heap-only tuple: no new
entries in the table's three indexes), if the page has room. At the default fill factor
(100) it often had not. SQLite has no such setting: nothing to do there.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE accounts SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
