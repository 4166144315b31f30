"""dispatch core: PostGIS, accounts, workers and the match index, jobs, offers, events

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        """
CREATE TABLE users (
    id serial PRIMARY KEY,
    email varchar(254) NOT NULL UNIQUE,
    name varchar(120) NOT NULL,
    phone_e164 varchar(16) NOT NULL UNIQUE,
    role varchar(20) NOT NULL
        CONSTRAINT ck_users_role CHECK (role IN ('resident', 'worker', 'property_manager', 'admin')),
    locale varchar(10) NOT NULL DEFAULT 'en',
    password_hash varchar(255) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_sha256 varchar(64) NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX ix_api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE categories (
    id serial PRIMARY KEY,
    parent_id integer REFERENCES categories(id),
    slug varchar(80) NOT NULL UNIQUE,
    name varchar(120) NOT NULL,
    path varchar(400) NOT NULL UNIQUE,
    bookable boolean NOT NULL DEFAULT false
);
CREATE INDEX ix_categories_parent_id ON categories (parent_id);

CREATE TABLE workers (
    user_id integer PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    travel_mode varchar(10) NOT NULL DEFAULT 'car'
        CONSTRAINT ck_workers_travel_mode CHECK (travel_mode IN ('walk', 'bike', 'car')),
    service_radius_m integer NOT NULL DEFAULT 15000
        CONSTRAINT ck_workers_radius CHECK (service_radius_m BETWEEN 100 AND 200000),
    availability varchar(10) NOT NULL DEFAULT 'offline'
        CONSTRAINT ck_workers_availability CHECK (availability IN ('offline', 'online', 'busy')),
    location geography(Point, 4326),
    location_accuracy_m double precision,
    location_at timestamptz,
    reputation double precision NOT NULL DEFAULT 0.5,
    last_assigned_at timestamptz
);

-- The match index: one row per (worker, bookable category) carrying copies of the worker's
-- availability and position, so one partial GiST index answers "nearest available verified
-- plumbers" with a KNN scan. Triggers below keep the copies exact.
CREATE TABLE worker_skills (
    worker_id integer NOT NULL REFERENCES workers(user_id) ON DELETE CASCADE,
    category_id integer NOT NULL REFERENCES categories(id),
    verified boolean NOT NULL DEFAULT false,
    verified_at timestamptz,
    available boolean NOT NULL DEFAULT false,
    location geography(Point, 4326),
    location_at timestamptz,
    PRIMARY KEY (worker_id, category_id)
);
CREATE INDEX ix_worker_skills_match ON worker_skills USING gist (category_id, location)
    WHERE available AND verified;

CREATE FUNCTION worker_skills_copy_worker() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT w.availability = 'online', w.location, w.location_at
      INTO NEW.available, NEW.location, NEW.location_at
      FROM workers w WHERE w.user_id = NEW.worker_id;
    RETURN NEW;
END $$;
CREATE TRIGGER worker_skills_copy_worker BEFORE INSERT ON worker_skills
    FOR EACH ROW EXECUTE FUNCTION worker_skills_copy_worker();

CREATE FUNCTION workers_sync_skills() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE worker_skills
       SET available = (NEW.availability = 'online'),
           location = NEW.location,
           location_at = NEW.location_at
     WHERE worker_id = NEW.user_id;
    RETURN NULL;
END $$;
CREATE TRIGGER workers_sync_skills AFTER UPDATE OF availability, location, location_at
    ON workers FOR EACH ROW
    WHEN (OLD.availability IS DISTINCT FROM NEW.availability
          OR OLD.location_at IS DISTINCT FROM NEW.location_at
          OR OLD.location::bytea IS DISTINCT FROM NEW.location::bytea)
    EXECUTE FUNCTION workers_sync_skills();

CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    resident_id integer NOT NULL REFERENCES users(id),
    category_id integer NOT NULL REFERENCES categories(id),
    description text NOT NULL,
    location geography(Point, 4326) NOT NULL,
    address varchar(300),
    urgency varchar(10) NOT NULL DEFAULT 'urgent'
        CONSTRAINT ck_jobs_urgency CHECK (urgency IN ('urgent')),
    status varchar(20) NOT NULL
        CONSTRAINT ck_jobs_status CHECK (status IN ('requested', 'dispatching', 'assigned',
            'en_route', 'arrived', 'in_progress', 'completed', 'closed', 'cancelled',
            'unfilled', 'disputed')),
    worker_id integer REFERENCES workers(user_id),
    wave integer NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL,
    arrive_by timestamptz NOT NULL,
    estimated_arrival timestamptz,
    assigned_at timestamptz,
    arrived_at timestamptz,
    completed_at timestamptz,
    ended_at timestamptz,
    idempotency_key varchar(255) NOT NULL,
    request_fingerprint varchar(64) NOT NULL,
    CONSTRAINT uq_jobs_idempotency UNIQUE (resident_id, idempotency_key)
);
CREATE INDEX ix_jobs_resident_id ON jobs (resident_id);
CREATE INDEX ix_jobs_worker_id ON jobs (worker_id);
CREATE INDEX ix_jobs_dispatching ON jobs (id) WHERE status = 'dispatching';
-- The database's own guarantee: a worker holds at most one active urgent job.
CREATE UNIQUE INDEX ux_jobs_one_active_urgent_per_worker ON jobs (worker_id)
    WHERE urgency = 'urgent' AND status IN ('assigned', 'en_route', 'arrived', 'in_progress');

CREATE TABLE job_events (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs(id),
    at timestamptz NOT NULL,
    actor varchar(10) NOT NULL
        CONSTRAINT ck_job_events_actor CHECK (actor IN ('resident', 'worker', 'system', 'admin')),
    actor_user_id integer REFERENCES users(id),
    kind varchar(30) NOT NULL,
    from_status varchar(20),
    to_status varchar(20),
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_job_events_job_id ON job_events (job_id);

-- Events are evidence: they are appended, never rewritten.
CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only';
END $$;
CREATE TRIGGER job_events_append_only BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();

CREATE TABLE offers (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs(id),
    worker_id integer NOT NULL REFERENCES workers(user_id),
    wave integer NOT NULL,
    rank integer NOT NULL,
    status varchar(10) NOT NULL DEFAULT 'pending'
        CONSTRAINT ck_offers_status CHECK (status IN ('pending', 'accepted', 'declined',
            'expired', 'withdrawn')),
    distance_m double precision NOT NULL,
    eta_seconds double precision NOT NULL,
    score double precision NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    responded_at timestamptz,
    CONSTRAINT uq_offers_job_worker UNIQUE (job_id, worker_id)
);
CREATE INDEX ix_offers_job_id ON offers (job_id);
CREATE INDEX ix_offers_pending_due ON offers (expires_at) WHERE status = 'pending';
CREATE INDEX ix_offers_pending_worker ON offers (worker_id) WHERE status = 'pending';
-- At most one accepted offer per job, whatever the code does.
CREATE UNIQUE INDEX ux_offers_one_accepted_per_job ON offers (job_id) WHERE status = 'accepted';
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE offers, job_events, jobs, worker_skills, workers, categories, api_tokens, users;
DROP FUNCTION job_events_append_only, workers_sync_skills, worker_skills_copy_worker;
"""
    )
