"""portfolios: organizations and their managers, properties, units (tenant contact kept
private), preferred contractors; jobs may belong to an organization's unit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE organizations (
    id serial PRIMARY KEY,
    name varchar(200) NOT NULL,
    -- Whether jobs go to the open marketplace when no preferred contractor can take them.
    allow_marketplace boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL
);

CREATE TABLE organization_managers (
    org_id integer NOT NULL REFERENCES organizations(id),
    user_id integer NOT NULL UNIQUE REFERENCES users(id),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE properties (
    id serial PRIMARY KEY,
    org_id integer NOT NULL REFERENCES organizations(id),
    name varchar(200) NOT NULL,
    address varchar(300),
    CONSTRAINT uq_properties_org_name UNIQUE (org_id, name)
);

CREATE TABLE units (
    id serial PRIMARY KEY,
    property_id integer NOT NULL REFERENCES properties(id),
    label varchar(100) NOT NULL,
    address varchar(300) NOT NULL,
    location geography(Point, 4326) NOT NULL,
    access_notes text,
    tenant_name varchar(120),
    tenant_phone varchar(16),
    CONSTRAINT uq_units_property_label UNIQUE (property_id, label)
);

CREATE TABLE preferred_contractors (
    org_id integer NOT NULL REFERENCES organizations(id),
    worker_id integer NOT NULL REFERENCES workers(user_id),
    approved_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, worker_id)
);

ALTER TABLE jobs ADD COLUMN org_id integer REFERENCES organizations(id),
                 ADD COLUMN unit_id integer REFERENCES units(id);
CREATE INDEX ix_jobs_org_id ON jobs (org_id);
"""
    )


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN unit_id, DROP COLUMN org_id")
    op.execute("DROP TABLE preferred_contractors, units, properties, organization_managers, "
               "organizations")
