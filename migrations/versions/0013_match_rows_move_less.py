"""match rows move less: a worker's match rows (worker_skills) take a new position only when it
is more than 25 m from the one they hold. Freshness (location_at) and availability still copy
at every write, and the workers row keeps every fix exactly.

Every kept fix (one per online worker every few seconds) rewrote each of the worker's match
rows with a new location, so each write inserted into the GiST match index (a non-HOT
update). Unchanged indexed values let PostgreSQL update in place (HOT), without touching
the index; 25 m is under a tenth of a minute of travel, noise against the ETA model. The
tables also keep room on each page for those in-place updates (fillfactor).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MOVE_M = 25


def upgrade() -> None:
    op.execute(f"""
CREATE OR REPLACE FUNCTION workers_sync_skills() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE worker_skills
       SET available = (NEW.availability = 'online'),
           location = CASE
               WHEN location IS NOT NULL AND NEW.location IS NOT NULL
                    AND ST_DWithin(location, NEW.location, {MOVE_M}, false)
               THEN location ELSE NEW.location END,
           location_at = NEW.location_at
     WHERE worker_id = NEW.user_id;
    RETURN NULL;
END $$;
ALTER TABLE worker_skills SET (fillfactor = 80);
ALTER TABLE workers SET (fillfactor = 80);
""")


def downgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION workers_sync_skills() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE worker_skills
       SET available = (NEW.availability = 'online'),
           location = NEW.location,
           location_at = NEW.location_at
     WHERE worker_id = NEW.user_id;
    RETURN NULL;
END $$;
ALTER TABLE worker_skills RESET (fillfactor);
ALTER TABLE workers RESET (fillfactor);
""")
