"""Request and response schemas of the JSON API (also the source of the OpenAPI document).
The inputs services take are the domain's commands (`dispatch.domain.commands`); the ones
here only HTTP reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.domain.commands import (
    Command,
    Id,
)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- accounts -------------------------------------------------------------------------------



class LoginIn(Command):
    email: Annotated[str, Field(max_length=254)]
    password: Annotated[str, Field(max_length=128)]


class UserOut(Out):
    id: int
    email: str
    name: str
    phone: str
    role: str
    locale: str


class TokenOut(Out):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserOut


# --- categories -----------------------------------------------------------------------------

class CategoryOut(Out):
    id: int
    slug: str
    name: str
    path: str
    bookable: bool
    children: list[CategoryOut] = []


class CategoryTreeOut(Out):
    categories: list[CategoryOut]


class CategoryRef(Out):
    id: int
    slug: str
    name: str
    path: str


# --- workers --------------------------------------------------------------------------------



class SkillsIn(Command):
    category_ids: Annotated[list[Id], Field(min_length=1, max_length=50,
                                             description="categories; a branch means its leaves")]


class AvailabilityIn(Command):
    availability: Literal["online", "offline"]




class LocationResultOut(Out):
    accepted: bool
    reason: Literal["out_of_order", "implausible_jump", "rate_limited"] | None = Field(
        None, description="why a fix was dropped (nothing wrong with the request itself)")
    message: str | None = Field(None, description="the reason as a sentence for people")


class VerifySkillIn(Command):
    category_id: Id
    verified: bool


class SkillOut(Out):
    category: CategoryRef
    verified: bool


class LocationOut(Out):
    lat: float
    lng: float
    accuracy_m: float | None
    at: datetime


class WorkerProfileOut(Out):
    user_id: int
    name: str
    travel_mode: str
    service_radius_m: int
    availability: str
    location: LocationOut | None
    skills: list[SkillOut]


# --- jobs and offers ------------------------------------------------------------------------



class JobWorkerOut(Out):
    id: int
    name: str
    travel_mode: str


class JobOut(Out):
    """A job as its resident, its worker or an operator sees it. A worker sees the exact
    place only while the job is active: afterwards `lat`/`lng` are rounded to about 100 m
    and `address` is null."""

    id: int
    status: str
    urgency: str
    category: CategoryRef
    description: str
    lat: float
    lng: float
    address: str | None
    requested_at: datetime
    arrive_by: datetime = Field(description="the promise: someone at the door by this time")
    promised: bool = Field(
        True, description="false while only one or two workers could make it and none has "
                          "accepted yet: the job is offered, but arrive_by is a deadline, "
                          "not yet a promise")
    window_start: datetime | None = Field(
        None, description="a scheduled job's booked arrival window opens (urgent: null); "
                          "it closes at arrive_by")
    window_end: datetime | None = None
    estimated_arrival: datetime | None
    queued: bool = Field(
        False, description="assigned to a worker who is finishing another job nearby: they "
                           "set out when it ends, and estimated_arrival counts the wait")
    worker: JobWorkerOut | None
    assigned_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    masked_number: str | None = Field(
        None, description="call or text this number to reach the other party (while the "
                          "job is under way; neither side sees the other's real number)")
    unit_id: int | None = None
    property_id: int | None = None
    batch_id: int | None = None
    time_zone: str = Field(description="the IANA time zone of the place (the service's): "
                                       "show the job's times in it, not the viewer's")


class JobListOut(Out):
    jobs: list[JobOut]


class JobEventOut(Out):
    id: int
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, object]


class JobEventsOut(Out):
    events: list[JobEventOut]


class JobStatusIn(Command):
    status: Literal["en_route", "arrived", "in_progress", "completed"]


class CancelIn(Command):
    reason: Annotated[str | None, Field(max_length=500)] = None


class NoCoverageBody(Out):
    code: Literal["no_coverage"]
    message: str
    fields: list[dict[str, str]]
    earliest_arrival: datetime | None = Field(
        description="the earliest anyone could arrive, when someone could come at all")


class NoCoverageOut(Out):
    error: NoCoverageBody


class OfferJobOut(Out):
    """What a worker weighs before accepting: the exact address comes with the job."""

    id: int
    category: CategoryRef
    description: str
    approx_lat: float = Field(description="rounded to about 100 m")
    approx_lng: float = Field(description="rounded to about 100 m")
    arrive_by: datetime
    urgency: str = Field(description="'urgent' (go now) or 'scheduled' (be there within the "
                                     "window)")
    window_start: datetime | None = None
    window_end: datetime | None = None
    time_zone: str = Field(description="the IANA time zone of the place: show times in it")


class OfferOut(Out):
    id: int
    status: str
    wave: int
    created_at: datetime
    expires_at: datetime
    eta_seconds: float
    distance_m: float
    queued: bool = Field(description="accepting queues the job behind the one you are on: "
                                     "eta_seconds counts the rest of that job")
    job: OfferJobOut


class OfferListOut(Out):
    offers: list[OfferOut]


class OfferResultOut(Out):
    offer: OfferOut
    job: JobOut | None = None


class LocationPingOut(LocationResultOut):
    worker: WorkerProfileOut


# --- portfolios ------------------------------------------------------------------------------





class OrganizationOut(Out):
    id: int
    name: str
    allow_marketplace: bool
    webhook_url: str | None = None
    webhook_secret: str | None = Field(
        None, description="verify X-Dispatch-Signature (t=<unix seconds>,sha256=<HMAC-SHA256 "
                          "of '<t>.' + the raw body>; refuse a t more than 5 minutes off) "
                          "with it")




class PropertyOut(Out):
    id: int
    name: str
    address: str | None


class PropertyListOut(Out):
    properties: list[PropertyOut]




class UnitOut(Out):
    id: int
    property_id: int
    label: str
    address: str
    lat: float
    lng: float
    access_notes: str | None
    tenant_name: str | None
    tenant_phone: str | None


class UnitListOut(Out):
    units: list[UnitOut]


class RowProblem(Out):
    line: int = Field(description="line number in the uploaded file (the header is line 1)")
    field: str
    problem: str


class UnitImportOut(Out):
    accepted: list[UnitOut]
    rejected: list[RowProblem]


class ContractorIn(Command):
    worker_id: Id


class ContractorOut(Out):
    worker_id: int
    name: str
    approved_at: datetime


class ContractorListOut(Out):
    contractors: list[ContractorOut]


# --- batches ---------------------------------------------------------------------------------

class BatchIn(Command):
    batch_key: Annotated[str, Field(min_length=1, max_length=200,
                                    description="the same key never creates anything twice")]
    rows: Annotated[list[object], Field(
        max_length=1000, description="each: unit_id (or property + unit), category (slug or "
                                     "id), description, urgency ('urgent', or an arrival "
                                     "window such as 'tomorrow 09:00-12:00' or "
                                     "'2026-12-01 13:00-17:00' in the service area's time "
                                     "zone), budget_cap")]


class BatchJobOut(Out):
    id: int
    unit_id: int | None
    status: str
    worker_id: int | None


class BatchOut(Out):
    id: int
    batch_key: str
    status: str = Field(description="queued, processing, done or failed")
    total_rows: int
    processed_rows: int
    accepted_rows: int
    rejected: list[RowProblem]
    jobs: list[BatchJobOut]


class SlaRowOut(Out):
    property_id: int
    property: str
    month: str
    jobs: int
    arrived: int
    on_time: int
    unfilled: int
    cancelled: int
    on_time_pct: float | None = Field(description="share of the month's jobs that arrived "
                                                  "within the promise (urgent) or the "
                                                  "booked window (scheduled)")
    median_accept_min: float | None
    median_arrival_min: float | None = Field(description="urgent jobs: request to arrival")
    budget_caps_total: float | None = Field(
        None, description="sum of the budget caps set on the month's jobs (not cancelled): "
                          "what the manager authorised. Charges themselves arrive with "
                          "payments")


class SlaReportOut(Out):
    month: str
    rows: list[SlaRowOut]
