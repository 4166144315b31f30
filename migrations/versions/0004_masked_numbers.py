"""number masking: the platform's pool numbers, masked sessions and their participants,
masked-message metadata, opt-outs, and operator alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE pool_numbers (
    id serial PRIMARY KEY,
    e164 varchar(16) NOT NULL UNIQUE,
    sms boolean NOT NULL DEFAULT true,
    voice boolean NOT NULL DEFAULT true,
    active boolean NOT NULL DEFAULT true,
    added_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE masked_sessions (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs(id),
    pool_number_id integer NOT NULL REFERENCES pool_numbers(id),
    opened_at timestamptz NOT NULL,
    close_after timestamptz,
    closed_at timestamptz
);
CREATE INDEX ix_masked_sessions_job_id ON masked_sessions (job_id);
CREATE INDEX ix_masked_sessions_closing ON masked_sessions (close_after)
    WHERE closed_at IS NULL;

-- Routing key: (participant's real number, pool number) -> their open session. The unique
-- index is the rule itself: nobody holds the same pool number in two open sessions.
CREATE TABLE masked_participants (
    session_id bigint NOT NULL REFERENCES masked_sessions(id),
    role varchar(10) NOT NULL CHECK (role IN ('resident', 'worker')),
    user_id integer NOT NULL REFERENCES users(id),
    number varchar(16) NOT NULL,
    pool_number_id integer NOT NULL REFERENCES pool_numbers(id),
    open boolean NOT NULL DEFAULT true,
    PRIMARY KEY (session_id, role)
);
CREATE UNIQUE INDEX ux_masked_open_pair ON masked_participants (pool_number_id, number)
    WHERE open;

-- Dispute evidence: who reached whom, when, through which number. Bodies only when the
-- deployment keeps them (KEEP_MASKED_MESSAGE_BODIES).
CREATE TABLE masked_messages (
    id bigserial PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES masked_sessions(id),
    kind varchar(5) NOT NULL CHECK (kind IN ('sms', 'call')),
    from_role varchar(10) NOT NULL,
    at timestamptz NOT NULL,
    twilio_sid varchar(64),
    body text,
    media_count integer NOT NULL DEFAULT 0
);
CREATE INDEX ix_masked_messages_session ON masked_messages (session_id);

CREATE TABLE sms_opt_outs (
    number varchar(64) PRIMARY KEY,  -- as Twilio sends it (channels such as whatsapp:+1...)
    at timestamptz NOT NULL
);

CREATE TABLE operator_alerts (
    id bigserial PRIMARY KEY,
    kind varchar(40) NOT NULL,
    job_id bigint REFERENCES jobs(id),
    detail jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX ix_operator_alerts_open ON operator_alerts (created_at) WHERE resolved_at IS NULL;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE operator_alerts, sms_opt_outs, masked_messages, masked_participants, "
               "masked_sessions, pool_numbers")
