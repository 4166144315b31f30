"""queued jobs: an urgent job may be accepted by a worker who is finishing another job
nearby. It waits, assigned, behind that job (`queued_behind_job_id`) and becomes the worker's
current job the moment the other one ends. Matching needs to know when a busy worker comes
free, so each bookable category carries its typical time on site.

- `categories.typical_minutes`: the catalogue's estimate of time on site (ops can edit it).
- `jobs.queued_behind_job_id`: set only while the job is assigned and waiting.
- The one-occupying-job index leaves a queued job out (the job it waits behind occupies the
  worker); a second index allows one queued job per worker.
- A GiST index over the places of jobs with a worker on them finds busy workers finishing
  near a request without walking the whole job history.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Minutes on site a job of this kind usually takes (leaves of 0002's tree).
TYPICAL_MINUTES = {
    "leak-repair": 60, "drain-unclogging": 45, "water-heater": 90, "power-outage": 60,
    "outlets-switches": 40, "lockout": 20, "lock-change": 40, "fridge-freezer": 60,
    "washer-dryer": 60, "heating-repair": 75, "ac-repair": 60, "broken-window": 60,
    "dog-walking": 45, "pet-sitting": 120, "vet-transport": 75,
    "water-damage-cleanup": 150, "move-out-cleaning": 180, "heavy-lifting": 90,
}


def upgrade() -> None:
    op.execute("""
ALTER TABLE categories ADD COLUMN typical_minutes integer NOT NULL DEFAULT 60
    CONSTRAINT ck_categories_typical_minutes CHECK (typical_minutes BETWEEN 5 AND 1440);
ALTER TABLE jobs ADD COLUMN queued_behind_job_id bigint REFERENCES jobs(id);
-- An offer made to a worker finishing a job says which: only such an offer may queue.
ALTER TABLE offers ADD COLUMN queued_behind_job_id bigint;
ALTER TABLE jobs ADD CONSTRAINT ck_jobs_queued CHECK (
    queued_behind_job_id IS NULL
    OR (urgency = 'urgent' AND status = 'assigned' AND queued_behind_job_id <> id));

DROP INDEX ux_jobs_one_occupying_per_worker;
CREATE UNIQUE INDEX ux_jobs_one_occupying_per_worker ON jobs (worker_id)
    WHERE status IN ('en_route', 'arrived', 'in_progress')
       OR (urgency = 'urgent' AND status = 'assigned' AND queued_behind_job_id IS NULL);
CREATE UNIQUE INDEX ux_jobs_one_queued_per_worker ON jobs (worker_id)
    WHERE queued_behind_job_id IS NOT NULL;
CREATE INDEX ix_jobs_occupied_location ON jobs USING gist (location)
    WHERE status IN ('assigned', 'en_route', 'arrived', 'in_progress');
""")
    conn = op.get_bind()
    for slug, minutes in TYPICAL_MINUTES.items():
        conn.execute(sa.text("UPDATE categories SET typical_minutes = :m WHERE slug = :s"),
                     {"m": minutes, "s": slug})


def downgrade() -> None:
    op.execute("""
-- fails (unique index) while a worker holds a queued job: end or cancel those first
DROP INDEX ix_jobs_occupied_location;
DROP INDEX ux_jobs_one_queued_per_worker;
DROP INDEX ux_jobs_one_occupying_per_worker;
ALTER TABLE jobs DROP CONSTRAINT ck_jobs_queued;
ALTER TABLE jobs DROP COLUMN queued_behind_job_id;
ALTER TABLE offers DROP COLUMN queued_behind_job_id;
CREATE UNIQUE INDEX ux_jobs_one_occupying_per_worker ON jobs (worker_id)
    WHERE status IN ('en_route', 'arrived', 'in_progress')
       OR (urgency = 'urgent' AND status = 'assigned');
ALTER TABLE categories DROP COLUMN typical_minutes;
""")
