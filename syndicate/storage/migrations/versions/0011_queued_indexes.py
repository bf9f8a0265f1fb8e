"""Claims of queued deliveries: partial indexes holding only the queued ones, by id and by run.

A claim asks for the first queued deliveries in id order (of one run, or of any). The existing
indexes serve it only when PostgreSQL's statistics happen to favour them: right after a run is
planned it took the queued rows for a handful (a bitmap scan and a sort of all of them at every
claim), and once they were analysed as nearly every row it walked the primary key through the
deliveries already sent. An index of the queued rows alone is read from its start and stops at
the claim's limit, whatever the statistics say.

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index("ix_deliveries_queued", "deliveries", ["id"], postgresql_where=QUEUED, sqlite_where=QUEUED)
    op.create_index("ix_deliveries_run_queued", "deliveries", ["run_id", "id"], postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade() -> None:
    op.drop_index("ix_deliveries_run_queued", table_name="deliveries")
    op.drop_index("ix_deliveries_queued", table_name="deliveries")
