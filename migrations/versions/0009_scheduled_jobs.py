"""scheduled jobs: a booked arrival window (e.g. tomorrow 09:00-12:00) besides the urgent
promise; a scheduled job keeps its worker busy only once they set out

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE jobs ADD COLUMN window_start timestamptz,
                 ADD COLUMN window_end timestamptz;
ALTER TABLE jobs DROP CONSTRAINT ck_jobs_urgency;
ALTER TABLE jobs ADD CONSTRAINT ck_jobs_urgency CHECK (urgency IN ('urgent', 'scheduled'));
-- A scheduled job has a proper window and its promise is the window's end.
ALTER TABLE jobs ADD CONSTRAINT ck_jobs_window CHECK (
    (urgency = 'urgent' AND window_start IS NULL AND window_end IS NULL)
    OR (urgency = 'scheduled' AND window_start < window_end AND arrive_by = window_end));

-- One job at a time keeps a worker busy: an urgent one from the accept, a scheduled one
-- once the worker sets out (dispatch.domain.states.occupies_worker says the same).
DROP INDEX ux_jobs_one_active_urgent_per_worker;
CREATE UNIQUE INDEX ux_jobs_one_occupying_per_worker ON jobs (worker_id)
    WHERE status IN ('en_route', 'arrived', 'in_progress')
       OR (urgency = 'urgent' AND status = 'assigned');
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX ux_jobs_one_occupying_per_worker;
-- fails (check constraint) while scheduled jobs exist: they cannot be expressed before 0009
ALTER TABLE jobs DROP CONSTRAINT ck_jobs_window;
ALTER TABLE jobs DROP CONSTRAINT ck_jobs_urgency;
ALTER TABLE jobs ADD CONSTRAINT ck_jobs_urgency CHECK (urgency IN ('urgent'));
CREATE UNIQUE INDEX ux_jobs_one_active_urgent_per_worker ON jobs (worker_id)
    WHERE urgency = 'urgent' AND status IN ('assigned', 'en_route', 'arrived', 'in_progress');
ALTER TABLE jobs DROP COLUMN window_start, DROP COLUMN window_end;
"""
    )
