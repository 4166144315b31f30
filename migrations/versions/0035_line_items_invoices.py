"""line items and invoices: what a job came to, and its invoice.

`job_line_items`: the completion form's lines (call-out, labour, parts, surcharge), written
by the server from the category's price list and the worker's minutes and parts.
`invoices`: one per job, opened with the hold at booking (status hold -> in_review ->
approved | declined -> paid, or void), numbered INV-<year>-<job id>. Jobs booked before
this revision get theirs on completion.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-03
"""

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE job_line_items (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs (id),
    position integer NOT NULL,
    kind varchar(20) NOT NULL
        CONSTRAINT ck_job_line_items_kind
        CHECK (kind IN ('call_out', 'labour', 'parts', 'surcharge')),
    description varchar(200) NOT NULL,
    quantity integer NOT NULL DEFAULT 1,
    unit_amount_cents integer NOT NULL,
    amount_cents integer NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT ck_job_line_items_amounts CHECK (
        quantity > 0 AND unit_amount_cents >= 0 AND amount_cents >= 0
        AND (kind = 'labour' OR amount_cents = quantity * unit_amount_cents)),
    CONSTRAINT uq_job_line_items_position UNIQUE (job_id, position)
);
CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    number varchar(40) NOT NULL UNIQUE,
    job_id bigint NOT NULL UNIQUE REFERENCES jobs (id),
    payer_user_id integer REFERENCES users (id),
    payer_organization_id integer REFERENCES organizations (id),
    org_id integer REFERENCES organizations (id),
    property_id integer REFERENCES properties (id),
    status varchar(20) NOT NULL
        CONSTRAINT ck_invoices_status
        CHECK (status IN ('hold', 'in_review', 'approved', 'declined', 'paid', 'void')),
    amount_cents integer NOT NULL CONSTRAINT ck_invoices_amount CHECK (amount_cents >= 0),
    currency varchar(3) NOT NULL,
    decline_reason text,
    issued_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    paid_at timestamptz,
    CONSTRAINT ck_invoices_payer CHECK (
        (payer_user_id IS NULL) <> (payer_organization_id IS NULL)),
    CONSTRAINT ck_invoices_paid CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX ix_invoices_org_id ON invoices (org_id, id);
""")


def downgrade() -> None:
    op.execute("DROP TABLE invoices; DROP TABLE job_line_items;")
