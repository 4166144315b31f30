"""approval limits: soft/hard limits per organization, property and job; approval requests.

Limits are columns on the three scopes they belong to (organizations, properties, jobs),
not one keyed table: each scope row has exactly one set, a foreign key already ties it to
its parent, and reading a job's limits is one join instead of a polymorphic lookup.
Each kind (emergency = urgent work, routine = scheduled work) is a PAIR set together or
cleared together, and inherited as a pair (the most specific scope with a pair wins):
soft <= hard then holds for whatever a job inherits, which per-column inheritance across
scopes could not promise.

`approval_requests`: a final amount above the hard limit, waiting for one of the
organization's managers (pending -> approved | declined, once).

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-03
"""

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

SCOPES = ("organizations", "properties", "jobs")


def _limit_columns(table: str) -> str:
    return f"""
ALTER TABLE {table}
    ADD COLUMN soft_emergency_cents integer,
    ADD COLUMN hard_emergency_cents integer,
    ADD COLUMN soft_routine_cents integer,
    ADD COLUMN hard_routine_cents integer,
    ADD CONSTRAINT ck_{table}_limits CHECK (
        (soft_emergency_cents IS NULL) = (hard_emergency_cents IS NULL)
        AND (soft_routine_cents IS NULL) = (hard_routine_cents IS NULL)
        AND soft_emergency_cents >= 0 AND soft_emergency_cents <= hard_emergency_cents
        AND soft_routine_cents >= 0 AND soft_routine_cents <= hard_routine_cents);
"""


def upgrade() -> None:
    op.execute("".join(_limit_columns(t) for t in SCOPES))
    op.execute("""
CREATE TABLE approval_requests (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs (id),
    org_id integer NOT NULL REFERENCES organizations (id),
    amount_cents integer NOT NULL CHECK (amount_cents >= 0),
    hard_limit_cents integer,
    requested_by integer REFERENCES users (id),
    requested_at timestamptz NOT NULL,
    status varchar(10) NOT NULL DEFAULT 'pending'
        CONSTRAINT ck_approval_requests_status
        CHECK (status IN ('pending', 'approved', 'declined')),
    decided_by integer REFERENCES users (id),
    decided_at timestamptz,
    reason text,
    CONSTRAINT ck_approval_requests_decided CHECK (
        (status = 'pending') = (decided_at IS NULL)
        AND (status <> 'declined' OR reason IS NOT NULL))
);
CREATE INDEX ix_approval_requests_org_status ON approval_requests (org_id, status, id);
CREATE UNIQUE INDEX ux_approval_requests_one_pending_per_job ON approval_requests (job_id)
    WHERE status = 'pending';
""")


def downgrade() -> None:
    op.execute("DROP TABLE approval_requests;")
    for table in SCOPES:
        op.execute(f"""
ALTER TABLE {table} DROP CONSTRAINT ck_{table}_limits,
    DROP COLUMN soft_emergency_cents, DROP COLUMN hard_emergency_cents,
    DROP COLUMN soft_routine_cents, DROP COLUMN hard_routine_cents;
""")
