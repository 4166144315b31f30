"""Database models. Statuses are text with CHECK constraints whose values come from
`dispatch.domain.states`, so the state machines and the schema name the same things."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geography, Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from dispatch.db import db
from dispatch.domain.money import (
    ACCOUNT_OWNER,
    AccountKind,
    LineItemKind,
    Owner,
    PayoutKind,
    TransactionKind,
)
from dispatch.domain.states import (
    COMING_STATUSES,
    Actor,
    ApprovalStatus,
    Availability,
    BatchStatus,
    InvitationStatus,
    InvoiceStatus,
    JobStatus,
    MilestoneStatus,
    OfferStatus,
    PaymentStatus,
    PayoutStatus,
    sql_in,
)
from geo.eta import TravelMode
from notifications.states import DeliveryStatus, NotificationStatus

POINT = Geography(geometry_type="POINT", srid=4326, spatial_index=False)
NEUTRAL_REPUTATION = 0.5


class Role(StrEnum):
    RESIDENT = "resident"
    WORKER = "worker"
    PROPERTY_MANAGER = "property_manager"
    ADMIN = "admin"


class Urgency(StrEnum):
    """`urgent`: someone at the door within the promise (two hours). `scheduled`: someone
    at the door within a booked window (`window_start`..`window_end`, e.g. tomorrow 9-12)."""

    URGENT = "urgent"
    SCHEDULED = "scheduled"


# Each kind's limits are a pair set together, soft never above hard (migration 0034).
LIMITS_CHECK = (
    "(soft_emergency_cents IS NULL) = (hard_emergency_cents IS NULL) "
    "AND (soft_routine_cents IS NULL) = (hard_routine_cents IS NULL) "
    "AND soft_emergency_cents >= 0 AND soft_emergency_cents <= hard_emergency_cents "
    "AND soft_routine_cents >= 0 AND soft_routine_cents <= hard_routine_cents")


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    phone_e164: Mapped[str] = mapped_column(String(16), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(10), default="en", server_default="en")
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the owner of `phone_e164` answered a code sent to it; None until then, and again
    # once the phone changes (dispatch.services.phone_verification).
    phone_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    worker: Mapped[Worker | None] = relationship(back_populates="user", uselist=False)

    # What Flask-Login asks of a logged-in user (the HTTP layer's login sessions): kept here
    # as plain attributes so persistence does not import the web layer's extensions.
    is_active = True
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


class PhoneVerification(db.Model):
    """The code last sent to a number, and what answering it does: prove an account's phone
    (`user_id`) or create the account of a pending sign-up (`signup`, the form as typed,
    the password already hashed). One row per number; a new code replaces the old one."""

    __tablename__ = "phone_verifications"
    __table_args__ = (CheckConstraint("(user_id IS NULL) <> (signup IS NULL)",
                                      name="ck_phone_verifications_for_one"),)

    phone_e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    signup: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(db.Model):
    """Bearer tokens for the JSON API; only a SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()


class LoginSession(db.Model):
    """A page login (the cookie names it by a random key, of which only a SHA-256 is kept):
    the server can end it, so a cookie copied before logout opens nothing afterwards."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Category(db.Model):
    """A node of the service tree; only leaves are bookable and carry worker skills."""

    __tablename__ = "categories"
    __table_args__ = (
        CheckConstraint("typical_minutes BETWEEN 5 AND 1440",
                        name="ck_categories_typical_minutes"),
        CheckConstraint("call_out_cents >= 0 AND urgent_surcharge_cents >= 0 "
                        "AND hourly_low_cents > 0 AND hourly_high_cents >= hourly_low_cents "
                        "AND platform_fee_percent BETWEEN 0 AND 100",
                        name="ck_categories_prices"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    path: Mapped[str] = mapped_column(String(400), unique=True)
    bookable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Usual time on site: when a busy worker on a job of this kind will come free.
    typical_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default=text("60"))
    # The price list (services.pricing), in minor units of settings CURRENCY.
    call_out_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    hourly_low_cents: Mapped[int] = mapped_column(Integer, default=5000,
                                                  server_default=text("5000"))
    hourly_high_cents: Mapped[int] = mapped_column(Integer, default=9000,
                                                   server_default=text("9000"))
    # Added to an urgent (two-hour) job's estimate.
    urgent_surcharge_cents: Mapped[int] = mapped_column(Integer, default=0,
                                                        server_default=text("0"))
    platform_fee_percent: Mapped[int] = mapped_column(Integer, default=15,
                                                      server_default=text("15"))


class Worker(db.Model):
    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint(_in("travel_mode", TravelMode), name="ck_workers_travel_mode"),
        CheckConstraint(_in("availability", Availability), name="ck_workers_availability"),
        CheckConstraint("service_radius_m BETWEEN 100 AND 200000", name="ck_workers_radius"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    travel_mode: Mapped[str] = mapped_column(String(10), default=TravelMode.CAR.value,
                                             server_default=TravelMode.CAR.value)
    service_radius_m: Mapped[int] = mapped_column(Integer, default=15000,
                                                  server_default=text("15000"))
    availability: Mapped[str] = mapped_column(String(10), default=Availability.OFFLINE.value,
                                              server_default=Availability.OFFLINE.value)
    location: Mapped[Any] = mapped_column(POINT, nullable=True)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    location_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    location_heading: Mapped[float | None] = mapped_column(Float)
    location_speed_mps: Mapped[float | None] = mapped_column(Float)
    location_received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Fed by reviews in a later issue; neutral until then so it ranks nobody up or down.
    reputation: Mapped[float] = mapped_column(Float, default=NEUTRAL_REPUTATION,
                                              server_default=text(str(NEUTRAL_REPUTATION)))
    last_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the worker is usually available ([{"day", "start", "end"}], service time zone):
    # what they tell people, not a filter; offers still follow `availability`.
    weekly_hours: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb"))
    # Where payouts go: the simulator takes any "acct_..." ("fail" fails), Stripe the
    # connected account id. Empty until the first payout sets the default.
    payout_destination: Mapped[str | None] = mapped_column(String(255))
    # The provider says that account can receive payouts (Stripe: `account.updated`'s
    # payouts_enabled); until then payouts wait in the balance.
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=text("false"))
    lat: Mapped[float | None] = column_property(func.ST_Y(cast(location, Geometry)))
    lng: Mapped[float | None] = column_property(func.ST_X(cast(location, Geometry)))

    user: Mapped[User] = relationship(back_populates="worker")
    skills: Mapped[list[WorkerSkill]] = relationship(
        back_populates="worker", cascade="all, delete-orphan", order_by="WorkerSkill.category_id"
    )


class WorkerSkill(db.Model):
    """A worker's skill in one bookable category, and the match index row for it.

    `available`, `location` and `location_at` are copies of the worker's, kept by database
    triggers so the partial GiST index can serve the KNN search (see `geo.candidates`).
    """

    __tablename__ = "worker_skills"
    __table_args__ = (
        # The match index: nearest available verified workers of a category (btree_gist).
        Index("ix_worker_skills_match", "category_id", "location", postgresql_using="gist",
              postgresql_where=text("available AND verified")),
    )

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.user_id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), primary_key=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    available: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    location: Mapped[Any] = mapped_column(POINT, nullable=True)
    location_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    worker: Mapped[Worker] = relationship(back_populates="skills")
    category: Mapped[Category] = relationship()


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="ck_jobs_status"),
        CheckConstraint(_in("urgency", Urgency), name="ck_jobs_urgency"),
        # A scheduled job has a proper window and its promise is the window's end.
        CheckConstraint(
            "(urgency = 'urgent' AND window_start IS NULL AND window_end IS NULL) "
            "OR (urgency = 'scheduled' AND window_start < window_end AND arrive_by = window_end)",
            name="ck_jobs_window"),
        CheckConstraint(
            "queued_behind_job_id IS NULL "
            "OR (urgency = 'urgent' AND status = 'assigned' AND queued_behind_job_id <> id)",
            name="ck_jobs_queued"),
        CheckConstraint("budget_cap_cents > 0", name="jobs_budget_cap_cents_check"),
        CheckConstraint("(estimate_low_cents IS NULL) = (estimate_high_cents IS NULL) "
                        "AND estimate_low_cents >= 0 "
                        "AND estimate_high_cents >= estimate_low_cents",
                        name="ck_jobs_estimate"),
        CheckConstraint("final_amount_cents >= 0", name="ck_jobs_final_amount"),
        CheckConstraint(LIMITS_CHECK, name="ck_jobs_limits"),
        UniqueConstraint("resident_id", "idempotency_key", name="uq_jobs_idempotency"),
        Index("ix_jobs_dispatching", "id", postgresql_where=text("status = 'dispatching'")),
        # One job at a time keeps a worker busy (states.occupies_worker says the same), and
        # one more may wait queued behind it.
        Index("ux_jobs_one_occupying_per_worker", "worker_id", unique=True,
              postgresql_where=text(
                  "status IN ('en_route', 'arrived', 'in_progress') OR (urgency = 'urgent' "
                  "AND status = 'assigned' AND queued_behind_job_id IS NULL)")),
        Index("ux_jobs_one_queued_per_worker", "worker_id", unique=True,
              postgresql_where=text("queued_behind_job_id IS NOT NULL")),
        # Jobs a worker is coming to: the no-show sweep and windows behind a busy worker.
        Index("ix_jobs_coming", "id",
              postgresql_where=text(f"status IN {sql_in(COMING_STATUSES)}")),
        # Completed jobs' final amounts by category and area: suggested price ranges
        # (services.pricing reads them by the same geohash cell).
        Index("ix_jobs_priced_area", "category_id",
              text("ST_GeoHash(CAST(location AS geometry), 5)"), "completed_at",
              postgresql_where=text("final_amount_cents IS NOT NULL")),
        # Busy workers finishing near a request (matching of queued jobs).
        Index("ix_jobs_occupied_location", "location", postgresql_using="gist",
              postgresql_where=text(
                  "status IN ('assigned', 'en_route', 'arrived', 'in_progress')")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[Any] = mapped_column(POINT)
    address: Mapped[str | None] = mapped_column(String(300))
    urgency: Mapped[str] = mapped_column(String(10), default=Urgency.URGENT.value,
                                         server_default=Urgency.URGENT.value)
    status: Mapped[str] = mapped_column(String(20))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.user_id"), index=True)
    wave: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    arrive_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Told "someone by arrive_by"? Only when enough workers could make it at booking (see
    # PROMISE_MIN_CANDIDATES), or once one has accepted.
    promised: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    estimated_arrival: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    budget_cap_cents: Mapped[int | None] = mapped_column(Integer)
    # The estimate shown at booking (services.pricing), kept as the promise made then.
    estimate_low_cents: Mapped[int | None] = mapped_column(Integer)
    estimate_high_cents: Mapped[int | None] = mapped_column(Integer)
    # What the job came to (the completion form); suggested price ranges are read from it.
    final_amount_cents: Mapped[int | None] = mapped_column(Integer)
    # Approval limits (services.approvals): each kind a (soft, hard) pair, set or cleared
    # together, inherited organization -> property -> job as a pair.
    soft_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    hard_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    soft_routine_cents: Mapped[int | None] = mapped_column(Integer)
    hard_routine_cents: Mapped[int | None] = mapped_column(Integer)
    # Accepted by a worker still on another job: this one waits, assigned, until that one
    # ends (then the column is cleared and the worker sets out). Urgent jobs only.
    queued_behind_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    # A job's place never changes after the insert, so an UPDATE of the job (its status, its
    # wave) need not expire these and read them again for the next push.
    lat: Mapped[float] = column_property(func.ST_Y(cast(location, Geometry)),
                                         expire_on_flush=False)
    lng: Mapped[float] = column_property(func.ST_X(cast(location, Geometry)),
                                         expire_on_flush=False)

    resident: Mapped[User] = relationship(foreign_keys=[resident_id])
    worker: Mapped[Worker | None] = relationship(foreign_keys=[worker_id])
    unit: Mapped[Unit | None] = relationship()
    category: Mapped[Category] = relationship()
    events: Mapped[list[JobEvent]] = relationship(back_populates="job", order_by="JobEvent.id")


class JobEvent(db.Model):
    """Append-only history of a job: every status change and every dispatch step."""

    __tablename__ = "job_events"
    __table_args__ = (
        CheckConstraint(_in("actor", Actor), name="ck_job_events_actor"),
        # tracking.sweep: status changes by time
        Index("ix_job_events_status_at", "at", postgresql_where=text("kind = 'status'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(10))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")

    job: Mapped[Job] = relationship(back_populates="events")


class Offer(db.Model):
    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint(_in("status", OfferStatus), name="ck_offers_status"),
        # A worker holds at most one live offer per job; one that lapsed without their no
        # (expired, withdrawn) may be followed by another (dispatching.already_offered).
        Index("ux_offers_one_pending_per_job_worker", "job_id", "worker_id", unique=True,
              postgresql_where=text("status = 'pending'")),
        Index("ix_offers_pending_due", "expires_at", postgresql_where=text("status = 'pending'")),
        Index("ix_offers_pending_worker", "worker_id",
              postgresql_where=text("status = 'pending'")),
        # At most one accepted offer per job, whatever the code does.
        Index("ux_offers_one_accepted_per_job", "job_id", unique=True,
              postgresql_where=text("status = 'accepted'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.user_id"))
    wave: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default=OfferStatus.PENDING.value,
                                        server_default=OfferStatus.PENDING.value)
    distance_m: Mapped[float] = mapped_column(Float)
    eta_seconds: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Made to a worker finishing this job nearby: accepting queues the offered job behind
    # it, and eta_seconds counts the wait. (No foreign key: a record, never joined on.)
    queued_behind_job_id: Mapped[int | None] = mapped_column(BigInteger)

    job: Mapped[Job] = relationship()


class Organization(db.Model):
    """A property management company; its jobs go first to its preferred contractors."""

    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint(LIMITS_CHECK, name="ck_organizations_limits"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    allow_marketplace: Mapped[bool] = mapped_column(Boolean, default=True,
                                                    server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    # Approval limits (services.approvals): each kind a (soft, hard) pair, set or cleared
    # together, inherited organization -> property -> job as a pair.
    soft_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    hard_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    soft_routine_cents: Mapped[int | None] = mapped_column(Integer)
    hard_routine_cents: Mapped[int | None] = mapped_column(Integer)


class OrganizationManager(db.Model):
    __tablename__ = "organization_managers"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, unique=True)


class Property(db.Model):
    __tablename__ = "properties"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_properties_org_name"),
                      CheckConstraint(LIMITS_CHECK, name="ck_properties_limits"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    # Approval limits (services.approvals): each kind a (soft, hard) pair, set or cleared
    # together, inherited organization -> property -> job as a pair.
    soft_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    hard_emergency_cents: Mapped[int | None] = mapped_column(Integer)
    soft_routine_cents: Mapped[int | None] = mapped_column(Integer)
    hard_routine_cents: Mapped[int | None] = mapped_column(Integer)


class Unit(db.Model):
    """A rentable unit; tenant contact is for the organization's managers only."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("property_id", "label", name="uq_units_property_label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id"))
    label: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    location: Mapped[Any] = mapped_column(POINT)
    access_notes: Mapped[str | None] = mapped_column(Text)
    tenant_name: Mapped[str | None] = mapped_column(String(120))
    tenant_phone: Mapped[str | None] = mapped_column(String(16))
    lat: Mapped[float] = column_property(func.ST_Y(cast(location, Geometry)))
    lng: Mapped[float] = column_property(func.ST_X(cast(location, Geometry)))

    property: Mapped[Property] = relationship()


class PreferredContractor(db.Model):
    __tablename__ = "preferred_contractors"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.user_id"), primary_key=True)
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ContractorInvitation(db.Model):
    """A manager asks a worker, named by the e-mail or phone the manager typed, to be a
    preferred contractor; the worker answers. Until they accept, the manager sees only what
    they typed (not even whether such a worker exists)."""

    __tablename__ = "contractor_invitations"
    __table_args__ = (
        CheckConstraint(_in("status", InvitationStatus), name="ck_invitations_status"),
        CheckConstraint("(email IS NULL) <> (phone_e164 IS NULL)",
                        name="ck_invitations_one_contact"),
        # One open invitation per person per organization: inviting again is not a new row.
        Index("ux_invitations_pending_email", "org_id", "email", unique=True,
              postgresql_where=text(f"status = '{InvitationStatus.PENDING.value}' "
                                             "AND email IS NOT NULL")),
        Index("ux_invitations_pending_phone", "org_id", "phone_e164", unique=True,
              postgresql_where=text(f"status = '{InvitationStatus.PENDING.value}' "
                                             "AND phone_e164 IS NOT NULL")),
        Index("ix_invitations_email", "email"),
        Index("ix_invitations_phone", "phone_e164"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    email: Mapped[str | None] = mapped_column(String(254))  # lower case
    phone_e164: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), default=InvitationStatus.PENDING.value,
                                        server_default=InvitationStatus.PENDING.value)
    # Who answered (set on accept or decline; shown to the manager only after an accept).
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.user_id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(db.Model):
    """A property manager's batch of repair requests, processed in the background."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("status", BatchStatus), name="batches_status_check"),
        UniqueConstraint("org_id", "batch_key", name="uq_batches_org_key"),
        # The same file sent again under another key is found by its content.
        Index("ix_batches_org_fingerprint", "org_id", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    batch_key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default=BatchStatus.QUEUED.value,
                                        server_default=BatchStatus.QUEUED.value)
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list,
                                                           server_default="[]")
    total_rows: Mapped[int] = mapped_column(Integer)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When it was last put on its queue: the sweeper re-queues only batches stale by this.
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------------------------------------
# Tables the notifications package owns (outbox, webhook log, number masking) and operator
# alerts. Their code writes them with SQL of its own (notifications/ never imports dispatch);
# these models declare the same schema, so every table has a model and drift is checked
# (tests/test_schema_drift.py). Migrations 0004, 0005, 0008 and 0010 made them.
# ---------------------------------------------------------------------------------------------


class PartyRole(StrEnum):
    """The two sides of a masked session (notifications.masking.ROLES)."""

    RESIDENT = "resident"
    WORKER = "worker"


class MaskedMessageKind(StrEnum):
    SMS = "sms"
    CALL = "call"


class Notification(db.Model):
    """The SMS outbox (notifications.outbox): one row per (event, recipient), written with
    the change that causes it, then sent, retried and tracked by Twilio's callbacks."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(_in("status", NotificationStatus), name="notifications_status_check"),
        Index("ix_notifications_job", "job_id"),
        # Not unique: Twilio's are, but a mock answers every send with the same example SID.
        Index("ix_notifications_twilio_sid", "twilio_sid"),
        Index("ix_notifications_failed", "updated_at",
              postgresql_where=text("status = 'failed'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # None for a batch job's tenant: a unit's contact, not a user (migration 0010).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    event: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(10), server_default="sms")
    to_number: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(10))
    body: Mapped[str] = mapped_column(Text)
    # Skipped rather than sent late (an offer text after the offer ended would mislead).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(12),
                                        server_default=NotificationStatus.QUEUED.value)
    twilio_sid: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(db.Model):
    """One POST of a job state change to an organization's webhook (notifications
    .org_webhooks), at most once per change, retried until the receiver answers 2xx."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DeliveryStatus), name="webhook_deliveries_status_check"),
        Index("ix_webhook_deliveries_org", "org_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    event: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(10), server_default=DeliveryStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PoolNumber(db.Model):
    """One of the platform's own Twilio numbers that masked sessions pair people on. Retired
    (inactive), never deleted: closed sessions still point at it."""

    __tablename__ = "pool_numbers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    sms: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    voice: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MaskedSession(db.Model):
    """A job's resident and worker paired on one pool number; routes until `close_after`
    (set when the job ends) or `closed_at`."""

    __tablename__ = "masked_sessions"
    __table_args__ = (
        Index("ix_masked_sessions_closing", "close_after",
              postgresql_where=text("closed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    pool_number_id: Mapped[int] = mapped_column(ForeignKey("pool_numbers.id"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    close_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MaskedParticipant(db.Model):
    """The routing key: (participant's real number, pool number) -> their open session."""

    __tablename__ = "masked_participants"
    __table_args__ = (
        CheckConstraint(_in("role", PartyRole), name="masked_participants_role_check"),
        # The rule itself: nobody holds the same pool number in two open sessions.
        Index("ux_masked_open_pair", "pool_number_id", "number", unique=True,
              postgresql_where=text("open")),
    )

    session_id: Mapped[int] = mapped_column(ForeignKey("masked_sessions.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(10), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    number: Mapped[str] = mapped_column(String(16))
    pool_number_id: Mapped[int] = mapped_column(ForeignKey("pool_numbers.id"))
    open: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class MaskedMessage(db.Model):
    """Dispute evidence: who reached whom, when, through which number. The body only when
    the deployment keeps them (KEEP_MASKED_MESSAGE_BODIES)."""

    __tablename__ = "masked_messages"
    __table_args__ = (
        CheckConstraint(_in("kind", MaskedMessageKind), name="masked_messages_kind_check"),
        Index("ix_masked_messages_session", "session_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("masked_sessions.id"))
    kind: Mapped[str] = mapped_column(String(5))
    from_role: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    twilio_sid: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)
    media_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class TwilioRequest(db.Model):
    """The MessageSid or CallSid of each inbound text or call already handled: Twilio (or
    anyone replaying a captured signed request) may send it again, and a replay must
    forward nothing and connect nobody a second time."""

    __tablename__ = "twilio_requests"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SmsOptOut(db.Model):
    """A number that texted STOP: the outbox skips it until it texts START."""

    __tablename__ = "sms_opt_outs"

    # As Twilio sends it (channels such as whatsapp:+1...), hence longer than E.164.
    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OperatorAlert(db.Model):
    """Something an operator should look at (e.g. a job that proceeds without masking)."""

    __tablename__ = "operator_alerts"
    __table_args__ = (
        Index("ix_operator_alerts_open", "created_at",
              postgresql_where=text("resolved_at IS NULL")),
        # One open alert per job and cause: a cause that persists is not news every sweep.
        Index("ux_operator_alerts_open_cause", "job_id", "kind", unique=True,
              postgresql_where=text("resolved_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who resolved it (an operator; null when its cause went away by itself), and how.
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolution: Mapped[str | None] = mapped_column(String(500))


class SimPaymentObject(db.Model):
    """The simulated card processor's own records (dispatch.infra.payments.simulated): its
    authorisations, captures, refunds and payouts, as a processor would keep them. Nothing
    of the product reads them; they stand in for the processor's side of the wire."""

    __tablename__ = "sim_payment_objects"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="ck_sim_payment_objects_amount"),
        CheckConstraint("settled_cents >= 0 AND settled_cents <= amount_cents",
                        name="ck_sim_payment_objects_settled"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # authorization, capture, refund, payout
    status: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Of an authorisation: captured; of a capture: refunded.
    settled_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The authorisation a capture draws on, the capture a refund returns.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("sim_payment_objects.id"))
    # The card (payment method) of an authorisation, the account of a payout.
    party: Mapped[str | None] = mapped_column(String(255))
    decline_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SimPaymentRequest(db.Model):
    """The simulator's answer to each idempotency key: a retry gets the same answer (or
    the same refusal), never a second charge; reusing a key for another request is refused."""

    __tablename__ = "sim_payment_requests"

    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PaymentEvent(db.Model):
    """Each provider webhook event taken in, by the provider's unique event id: a replay or
    a duplicate arriving out of order finds its id here and changes nothing."""

    __tablename__ = "payment_events"
    __table_args__ = (
        # Bank answers to payouts by arrival: what the payouts sweep looks through.
        Index("ix_payment_events_payouts", "received_at",
              postgresql_where=text("type IN ('payout.paid', 'payout.failed')")),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _account_owner_check() -> str:
    """Each account kind names exactly the owner `dispatch.domain.money.ACCOUNT_OWNER` says."""
    shapes = {
        Owner.JOB: "job_id IS NOT NULL AND user_id IS NULL AND organization_id IS NULL",
        Owner.USER: "user_id IS NOT NULL AND job_id IS NULL AND organization_id IS NULL",
        Owner.PAYER: "job_id IS NULL AND num_nonnulls(user_id, organization_id) = 1",
        Owner.PLATFORM: "num_nonnulls(job_id, user_id, organization_id) = 0",
    }
    parts = []
    for owner, shape in shapes.items():
        kinds = ", ".join(repr(k.value) for k in AccountKind if ACCOUNT_OWNER[k] is owner)
        parts.append(f"(kind IN ({kinds}) AND {shape})")
    return " OR ".join(parts)


class LedgerAccount(db.Model):
    """A bucket of money in one currency: a payer's funding, one job's escrow, a worker's
    balance, the platform's fees... (`dispatch.domain.money.AccountKind`). Its balance is the
    sum of its entries; nothing else stores it, so nothing can disagree with it."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", AccountKind), name="ck_ledger_accounts_kind"),
        CheckConstraint(_account_owner_check(), name="ck_ledger_accounts_owner"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_ledger_accounts_currency"),
        # One account per kind, owner and currency; an absent owner counts as the same owner.
        UniqueConstraint("kind", "job_id", "user_id", "organization_id", "currency",
                         name="ux_ledger_accounts_owner", postgresql_nulls_not_distinct=True),
        # What the entries' (account_id, currency) foreign key points at.
        UniqueConstraint("id", "currency", name="ux_ledger_accounts_id_currency"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class LedgerTransaction(db.Model):
    """One money movement: its entries sum to zero per currency (checked by a deferred
    constraint trigger at commit), and its idempotency key makes a retry post nothing.
    Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE (migration 0031 says how
    test cleanup gets past TRUNCATE)."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TransactionKind), name="ck_ledger_transactions_kind"),
        Index("ix_ledger_transactions_job", "job_id",
              postgresql_where=text("job_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    memo: Mapped[str] = mapped_column(String(500), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class LedgerEntry(db.Model):
    """One side of a transaction: a signed amount on one account (positive adds to its
    balance). Its currency is its account's, by a composite foreign key. Append-only."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_cents <> 0", name="ck_ledger_entries_amount"),
        ForeignKeyConstraint(["account_id", "currency"],
                             ["ledger_accounts.id", "ledger_accounts.currency"],
                             name="fk_ledger_entries_account_currency"),
        # A balance is an index-only sum over this.
        Index("ix_ledger_entries_account", "account_id", postgresql_include=["amount_cents"]),
        Index("ix_ledger_entries_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    account_id: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class Payout(db.Model):
    """Money a worker takes out of their balance (`dispatch.services.payouts`): recorded as
    `requested` with its ledger move before the provider is asked, under a key the provider
    sees too, so a retry after a crash pays once."""

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint(_in("status", PayoutStatus), name="ck_payouts_status"),
        CheckConstraint(_in("kind", PayoutKind), name="ck_payouts_kind"),
        CheckConstraint("amount_cents > 0 AND fee_cents >= 0 AND fee_cents < amount_cents",
                        name="ck_payouts_amounts"),
        Index("ix_payouts_worker", "worker_id", "requested_at"),
        Index("ix_payouts_provider_id", "provider_payout_id", unique=True,
              postgresql_where=text("provider_payout_id IS NOT NULL")),
        Index("ix_payouts_requested", "requested_at",
              postgresql_where=text("status = 'requested'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # out of the balance, fee included
    fee_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12))
    destination: Mapped[str] = mapped_column(String(255))
    provider_payout_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    failure: Mapped[str | None] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PayoutRun(db.Model):
    """A weekly payout run that finished, by ISO week: the sweeper runs a week missing here."""

    __tablename__ = "payout_runs"

    week: Mapped[str] = mapped_column(String(10), primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApprovalRequest(db.Model):
    """A job's final amount above its organization's hard limit, for a manager to decide."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint(_in("status", ApprovalStatus), name="ck_approval_requests_status"),
        CheckConstraint("amount_cents >= 0", name="approval_requests_amount_cents_check"),
        CheckConstraint("(status = 'pending') = (decided_at IS NULL) "
                        "AND (status <> 'declined' OR reason IS NOT NULL)",
                        name="ck_approval_requests_decided"),
        Index("ix_approval_requests_org_status", "org_id", "status", "id"),
        Index("ux_approval_requests_one_pending_per_job", "job_id", unique=True,
              postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    hard_limit_cents: Mapped[int | None] = mapped_column(Integer)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(10), default=ApprovalStatus.PENDING.value,
                                        server_default=ApprovalStatus.PENDING.value)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship()


class JobPayment(db.Model):
    """A job's hold at the payment provider (services/escrow.py): the authorization placed at
    booking and what became of it. The ledger says where the money is; this row says what
    the provider was asked, so a retry or the sweeper can finish what a crash left."""

    __tablename__ = "job_payments"
    __table_args__ = (
        CheckConstraint(_in("status", PaymentStatus), name="ck_job_payments_status"),
        CheckConstraint("held_cents > 0 AND captured_cents >= 0 AND refunded_cents >= 0 "
                        "AND captured_cents + refunded_cents <= held_cents",
                        name="ck_job_payments_amounts"),
        # The sweeper's work: holds still open (to release after completion, or expired).
        Index("ix_job_payments_held", "authorization_expires_at",
              postgresql_where=text("status = 'held'")),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(String(255))
    authorization_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payer_organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    currency: Mapped[str] = mapped_column(String(3))
    held_cents: Mapped[int] = mapped_column(Integer)
    captured_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the hold was placed on (a provider token, never a card number) and, for Stripe,
    # the Customer that lets it be used again off-session: a hold re-authorized before it
    # lapses (services/reauthorization.py) is placed on them, `reauthorizations` times.
    payment_method: Mapped[str | None] = mapped_column(String(255))
    customer_id: Mapped[str | None] = mapped_column(String(255))
    reauthorizations: Mapped[int] = mapped_column(Integer, default=0,
                                                  server_default=text("0"))
    # Increments the card declined on this row (the attempt in the increment's key, so a
    # new try is a new request, not the replay of the decline), and when a re-authorization
    # was declined (it is not tried again: services/reauthorization.py).
    declined_increments: Mapped[int] = mapped_column(Integer, default=0,
                                                     server_default=text("0"))
    reauthorization_declined_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True))


class JobLineItem(db.Model):
    """One line of what a job came to, written at completion (services/final_amount.py):
    the call-out fee, the urgent surcharge and the labour from the category's price list,
    the parts as the worker entered them. A revision replaces the lines; the job's events
    keep every version."""

    __tablename__ = "job_line_items"
    __table_args__ = (
        CheckConstraint(_in("kind", LineItemKind), name="ck_job_line_items_kind"),
        # Labour is minutes x an hourly rate; every other line is quantity x unit amount.
        CheckConstraint("quantity > 0 AND unit_amount_cents >= 0 AND amount_cents >= 0 "
                        "AND (kind = 'labour' OR amount_cents = quantity * unit_amount_cents)",
                        name="ck_job_line_items_amounts"),
        UniqueConstraint("job_id", "position", name="uq_job_line_items_position"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(200))
    # Labour: minutes on site, priced per hour (amount = minutes x hourly rate / 60).
    quantity: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    unit_amount_cents: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Invoice(db.Model):
    """A job's invoice (one per job, services/invoices.py): opened with the hold at booking
    for the amount held, its amount the final amount once the worker completes, paid when
    the money is captured. For a resident, the paid invoice is the receipt."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(_in("status", InvoiceStatus), name="ck_invoices_status"),
        CheckConstraint("amount_cents >= 0", name="ck_invoices_amount"),
        CheckConstraint("(payer_user_id IS NULL) <> (payer_organization_id IS NULL)",
                        name="ck_invoices_payer"),
        CheckConstraint("(status = 'paid') = (paid_at IS NOT NULL)", name="ck_invoices_paid"),
        Index("ix_invoices_org_id", "org_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    payer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payer_organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    property_id: Mapped[int | None] = mapped_column(ForeignKey("properties.id"))
    status: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # The payer's (or a manager's) reason for declining the final amount last.
    decline_reason: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobMilestone(db.Model):
    """One stage of a job paid in stages (services/milestones.py): its amount, its own hold
    at the payment provider (placed when the stage before it is released) and what became
    of it. The job's escrow account in the ledger holds whichever stage is held."""

    __tablename__ = "job_milestones"
    __table_args__ = (
        CheckConstraint(_in("status", MilestoneStatus), name="ck_job_milestones_status"),
        CheckConstraint("amount_cents > 0 AND captured_cents >= 0 "
                        "AND captured_cents <= amount_cents AND position >= 1",
                        name="ck_job_milestones_amounts"),
        CheckConstraint("status = 'planned' OR status = 'cancelled' "
                        "OR authorization_id IS NOT NULL", name="ck_job_milestones_held"),
        UniqueConstraint("job_id", "position", name="uq_job_milestones_position"),
        # The sweeper's work: stages done and waiting for their release.
        Index("ix_job_milestones_done", "done_at", postgresql_where=text("status = 'done'")),
        # ... and held stages whose authorization lapses (to hold again).
        Index("ix_job_milestones_held", "authorization_expires_at",
              postgresql_where=text("status = 'held'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    payment_method: Mapped[str] = mapped_column(String(255))
    # The provider's customer the booking's reusable hold attached the card to (Stripe):
    # each later stage is held on it off-session.
    customer_id: Mapped[str | None] = mapped_column(String(255))
    authorization_id: Mapped[str | None] = mapped_column(String(255))
    authorization_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hold_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    hold_declined: Mapped[str | None] = mapped_column(String(100))
    captured_cents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
