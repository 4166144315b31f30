"""Request and response schemas of the JSON API (also the source of the OpenAPI document).
The inputs services take are the domain's commands (`dispatch.domain.commands`); the ones
here only HTTP reads."""

from __future__ import annotations

from datetime import date as calendar_date
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.domain.commands import (
    MULTI_LINE,
    Command,
    Id,
)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(Out):
    """One page of a list (`limit` items at most): ask again with `cursor=next_cursor` for
    the next, until `next_cursor` is null."""

    next_cursor: str | None = Field(description="the `cursor` of the next page; null on the "
                                                "last page")


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
    phone_verified: bool


class ResetRequestedOut(Out):
    message: str


class CodeSentOut(Out):
    message: str


class SignupRequestedOut(Out):
    """The same answer whatever the database holds: send `ticket` back with the texted code
    (`POST /auth/register/confirm`)."""

    message: str
    ticket: str


class TokenOut(Out):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserOut


# --- categories -----------------------------------------------------------------------------

class CategoryPricesOut(Out):
    """A bookable category's price list, in minor units of `currency` (cents)."""

    currency: str
    call_out_cents: int
    hourly_low_cents: int
    hourly_high_cents: int
    urgent_surcharge_cents: int = Field(description="added to an urgent (two-hour) job")
    platform_fee_percent: int = Field(description="the platform's share of what a job costs")
    typical_minutes: int = Field(description="usual time on site, learned from completed "
                                             "jobs")


class CategoryOut(Out):
    id: int
    slug: str
    name: str
    path: str
    bookable: bool
    prices: CategoryPricesOut | None = Field(None, description="bookable categories only")
    children: list[CategoryOut] = []


class EstimateOut(Out):
    """What a job will likely cost, before booking: `low_cents`..`high_cents` includes the
    call-out and, for an urgent job, the surcharge."""

    low_cents: int
    high_cents: int
    currency: str
    call_out_cents: int
    surcharge_cents: int = Field(description="the urgent surcharge included (0: scheduled)")
    basis: Literal["default", "history"] = Field(
        description="'history': the 25th to 75th percentile of what jobs of this service "
                    "came to nearby over the last 90 days; 'default': the price list")
    jobs_counted: int = Field(description="the completed jobs a 'history' range rests on")
    cancel_fee_cents: int = Field(0, description="what cancelling costs once the worker has "
                                  "set out (free before): CANCEL_FEE_CENTS, else the call-out")


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


class WeeklyHoursOut(Out):
    day: int = Field(description="0 is Monday, 6 is Sunday")
    start: str
    end: str


class WorkerProfileOut(Out):
    user_id: int
    name: str
    travel_mode: str
    service_radius_m: int
    availability: str
    location: LocationOut | None
    skills: list[SkillOut]
    weekly_hours: list[WeeklyHoursOut] = Field(
        description="when the worker is usually available, wall clock in `time_zone`")
    time_zone: str


# --- jobs and offers ------------------------------------------------------------------------



class JobWorkerOut(Out):
    id: int
    name: str
    travel_mode: str


class WorkerPositionOut(Out):
    lat: float
    lng: float
    at: datetime = Field(description="when the worker's phone took this fix")
    eta_at: datetime | None = Field(
        description="the arrival this position gives (start-up time included until the "
                    "worker sets out); null once they are there")


class MilestoneOut(Out):
    """One stage of a job paid in stages, and where its money is."""

    position: int = Field(description="1 for the first stage; the number in "
                          "/jobs/{id}/milestones/{n}/...")
    title: str
    amount_cents: int
    status: str = Field(description="planned (its money not held yet), held (the worker may "
                        "do it), done (the payer confirms it, or it is released by itself at "
                        "release_due_at), released (paid), cancelled (the job was called off)")
    held_at: datetime | None = None
    done_at: datetime | None = None
    release_due_at: datetime | None = Field(
        None, description="a done stage is released by itself at this time unless the payer "
                          "confirms it first")
    released_at: datetime | None = None
    hold_declined: str | None = Field(
        None, description="why holding this stage's money was refused (a decline code; on a "
                          "done stage: its hold lapsed and holding it again was refused): the "
                          "payer holds it again with POST /jobs/{id}/milestones/{n}/hold")


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
    asking_workers: int | None = Field(
        None, description="while dispatching, how many workers are being asked right now "
                          "(never who); only in the job's own answer, for its requester or "
                          "an operator")
    asking_until: datetime | None = Field(
        None, description="when the offers now out run out, unanswered")
    looking_until: datetime | None = Field(
        None, description="while dispatching, when the search for a worker stops")
    worker_position: WorkerPositionOut | None = Field(
        None, description="the worker's last known position while the job occupies them; "
                          "only for the job's requester or an operator")
    set_out_from: datetime | None = Field(
        None, description="a booked window not yet under way: the worker may set out "
                          "(en_route) from this time, its start less the trip less a margin")
    estimate_low_cents: int | None = Field(
        None, description="the price range shown at booking, fixed then (minor units of "
                          "`currency`); null for jobs booked without one")
    estimate_high_cents: int | None = None
    currency: str = Field(description="ISO 4217 code of every amount")
    ask_before_cents: int | None = Field(
        None, description="an organization's job: ask the organization before the final "
                          "amount goes above this (its soft approval limit); null: no limit")
    milestones: list[MilestoneOut] = Field(
        default_factory=list, description="a job paid in stages: its stages in order, each "
                                          "held and released on its own (empty otherwise)")


class JobListOut(PageOut):
    jobs: list[JobOut]


class JobEventOut(Out):
    id: int
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, object]


class JobEventsOut(PageOut):
    events: list[JobEventOut]


class JobStatusIn(Command):
    status: Literal["en_route", "arrived", "in_progress", "completed"]


class HandedBackOut(Out):
    job_id: int
    status: str = Field(description="the job's status now: `dispatching` while others are "
                                    "asked (or `unfilled` when nobody can come in time)")
    recorded: Literal["cant_make_it", "gave_back"] = Field(
        description="the job event recorded against the worker")


class MilestoneHoldIn(Command):
    payment_method: Annotated[str | None, Field(
        None, min_length=1, max_length=255,
        description="another card to hold the stage on (as in POST /jobs); left out, the "
                    "one the job was booked with")] = None


class CancelIn(Command):
    reason: Annotated[str | None, Field(max_length=500), MULTI_LINE] = None


class NoCoverageBody(Out):
    code: Literal["no_coverage"]
    message: str
    fields: list[dict[str, str]]
    earliest_arrival: datetime | None = Field(
        description="the earliest anyone could arrive, when someone could come at all")
    earliest_after_current_job: bool = Field(
        description="the earliest arrival is of a worker finishing another job nearby: an "
                    "estimate (when that job ends), not a time anyone could promise")
    reason: Literal["later", "nobody_on_duty", "nobody_covers"] = Field(
        description="'later': someone could come, at earliest_arrival; 'nobody_on_duty': "
                    "workers serve the place but none is online or finishing nearby, so no "
                    "time can be given; 'nobody_covers': no verified worker for the service "
                    "serves the place")
    time_zone: str = Field(description="the place's IANA time zone, to show the time in")


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
    earn_low_cents: int = Field(description="what the worker would likely earn: the job's "
                                            "estimate less the platform fee (minor units)")
    earn_high_cents: int
    currency: str = Field(description="ISO 4217 code of the amounts")
    ask_before_cents: int | None = Field(
        None, description="an organization's job: ask the organization before the final "
                          "amount goes above this (its soft approval limit); null: no limit")


class OfferListOut(PageOut):
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
    webhook_secret_set: bool = Field(False, description="whether deliveries are signed")
    webhook_secret: str | None = Field(
        None, description="present only in the answer that made it (the first webhook URL, "
                          "or a rotation): keep it then, it is never shown again. Verify "
                          "X-Dispatch-Signature (t=<unix seconds>,sha256=<HMAC-SHA256 "
                          "of '<t>.' + the raw body>; refuse a t more than 5 minutes off) "
                          "with it")




class PropertyOut(Out):
    id: int
    name: str
    address: str | None


class PropertyListOut(PageOut):
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


class UnitListOut(PageOut):
    units: list[UnitOut]


class RowProblem(Out):
    line: int = Field(description="line number in the uploaded file (the header is line 1)")
    field: str
    problem: str


class UnitImportOut(Out):
    accepted: list[UnitOut]
    rejected: list[RowProblem]


class InvitationOut(Out):
    id: int
    contact: str = Field(description="the e-mail or phone the manager typed")
    status: str = Field(description="pending, accepted, declined or withdrawn")
    created_at: datetime
    responded_at: datetime | None
    worker_id: int | None = Field(description="the worker, once they accepted")
    worker_name: str | None = Field(description="the worker's name, once they accepted")


class InvitationListOut(PageOut):
    invitations: list[InvitationOut]


class WorkerInvitationOut(Out):
    id: int
    organization: str
    created_at: datetime


class WorkerInvitationListOut(PageOut):
    invitations: list[WorkerInvitationOut]


class InvitationAnswerOut(Out):
    id: int
    status: str


class ContractorOut(Out):
    worker_id: int
    name: str
    approved_at: datetime


class ContractorListOut(PageOut):
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
    confirm_duplicate: bool = Field(False, description="send rows already sent under "
                                                       "another key again (otherwise 409)")


class BatchSummaryOut(Out):
    id: int
    batch_key: str
    status: str = Field(description="queued, processing, done or failed")
    created_at: datetime
    total_rows: int
    accepted_rows: int
    rejected_rows: int
    processed_rows: int
    jobs_by_status: dict[str, int]
    open_jobs: int = Field(description="jobs the manager may still cancel")


class BatchListOut(PageOut):
    batches: list[BatchSummaryOut]


class BulkCancelOut(Out):
    cancelled: list[int] = Field(description="the jobs this request cancelled")
    kept: int = Field(description="jobs already too far along to cancel")


class BatchJobOut(Out):
    id: int
    unit_id: int | None
    status: str
    worker_id: int | None


class BatchOut(PageOut):
    """The batch with a page of its jobs, in row order (`next_cursor` pages the jobs)."""

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
    late: int = Field(description="due and not on time: arrived after the promise, or not "
                                  "arrived with the promise passed, or unfilled")
    open: int = Field(description="still open with the promise ahead: not yet due, so "
                                  "neither on time nor late")
    unfilled: int
    cancelled: int
    on_time_pct: float | None = Field(description="on_time / (on_time + late): the share of "
                                                  "the jobs already due that arrived within "
                                                  "the promise (urgent) or the booked window "
                                                  "(scheduled); null while none is due")
    median_accept_min: float | None
    median_arrival_min: float | None = Field(description="urgent jobs: request to arrival")
    budget_caps_total: float | None = Field(
        None, description="sum of the budget caps set on the month's jobs (not cancelled): "
                          "what the manager authorised. Charges themselves arrive with "
                          "payments")
    cost_total: float | None = Field(
        None, description="what the month's jobs cost the organization, in major units: "
                          "the sum captured (charges and cancellation fees) for jobs whose "
                          "hold has ended; null while every hold is still open")


class StuckJobOut(Out):
    job_id: int
    property: str
    unit: str
    category: str
    status: str
    urgency: str
    arrive_by: datetime
    window_start: datetime | None
    window_end: datetime | None
    reason: str = Field(description="why it needs a person, in words")
    time_zone: str = Field(description="the IANA time zone of the place: show times in it")


class SlaReportOut(Out):
    month: str
    rows: list[SlaRowOut]
    stuck: list[StuckJobOut] = Field(
        default_factory=list, description="the month's open jobs that need a person: past "
                                          "their promise with nobody there, or looking for "
                                          "a worker with nobody being asked")


# --- payouts and earnings ---------------------------------------------------------------------


class PayoutIn(Command):
    amount_cents: int = Field(description="what leaves the balance, in minor units; the "
                                          "instant-payout fee is taken from it")


class PayoutOut(Out):
    id: int
    kind: str = Field(description="weekly or instant")
    status: str = Field(description="requested, in_transit, paid or failed")
    amount_cents: int = Field(description="what left the balance")
    fee_cents: int
    sent_cents: int = Field(description="what goes to the bank: the amount less the fee")
    currency: str
    destination: str
    requested_at: datetime
    updated_at: datetime


class EarningsTotalsOut(Out):
    jobs_paid: int
    gross_cents: int = Field(description="what the payers' escrow released for these jobs")
    platform_fees_cents: int
    net_cents: int = Field(description="what reached the worker's balance")


class EarningsOut(Out):
    currency: str
    time_zone: str = Field(description="the zone whose day and week these are")
    today: EarningsTotalsOut
    week: EarningsTotalsOut = Field(description="since Monday 00:00")
    balance_cents: int = Field(description="available to pay out")
    instant_min_cents: int
    instant_fee_cents: int
    payouts: list[PayoutOut] = Field(description="the latest payouts, newest first")
    payout_account: str | None = Field(None, description="the worker's connected account "
                                             "(acct_...), null before set-up")
    payouts_enabled: bool = Field(False, description="false: payouts wait in the balance "
                                                     "until the account is set up")


class PayoutAccountOut(Out):
    payout_account: str = Field(description="the worker's connected account (acct_...)")
    payouts_enabled: bool = Field(description="the provider lets it receive payouts")
    onboarding_url: str | None = Field(description="where to finish setting it up (Stripe's "
                                                   "hosted onboarding), null when done")
# --- approval limits -------------------------------------------------------------------------


class LimitsOut(Out):
    """One scope's own limits (null: inherited from the scope above)."""

    emergency_soft_cents: int | None
    emergency_hard_cents: int | None
    routine_soft_cents: int | None
    routine_hard_cents: int | None
    currency: str


class EffectiveLimitsOut(Out):
    soft_cents: int | None = Field(description="the worker is asked to check before going "
                                               "above it")
    hard_cents: int | None = Field(description="approved automatically up to it; above it "
                                               "a manager decides")
    source: Literal["job", "property", "organization", "none"]


class JobLimitsOut(LimitsOut):
    job_id: int
    kind: Literal["emergency", "routine"]
    effective: EffectiveLimitsOut


class ApprovalOut(Out):
    id: int
    job_id: int
    amount_cents: int
    hard_limit_cents: int | None
    requested_by: int | None
    requested_at: datetime
    status: str
    decided_by: int | None
    decided_at: datetime | None
    reason: str | None
    currency: str


class ApprovalListOut(PageOut):
    approvals: list[ApprovalOut]


# --- statements --------------------------------------------------------------------------------


class StatementRowOut(Out):
    job_id: int
    invoice_number: str | None = Field(description="the job's invoice (see /invoices)")
    invoice_status: str | None = Field(description="the invoice's status now: hold, "
                                                   "in_review, approved, declined, paid or "
                                                   "void")
    date: calendar_date = Field(description="of the job's last money movement in the "
                                            "month, in the service's time zone")
    property_id: int | None
    property: str | None
    unit: str | None
    category: str
    urgency: str
    status: str = Field(description="the job's status now")
    payment_status: str = Field(description="the hold now: held, released, voided or expired")
    currency: str
    held_cents: int = Field(description="the hold placed at booking, when placed this month")
    charged_cents: int = Field(description="captured from the organization this month, "
                                           "cancellation fees included")
    refunded_cents: int = Field(description="the part of the hold given back this month")
    cancellation_fee_cents: int = Field(description="the part of charged_cents that was a "
                                                    "cancellation fee")


class StatementTotalOut(Out):
    currency: str
    jobs: int
    held_cents: int
    charged_cents: int
    refunded_cents: int
    cancellation_fee_cents: int


class StatementOut(Out):
    month: str
    time_zone: str
    property_id: int | None
    rows: list[StatementRowOut] = Field(description="one per job whose money moved in the "
                                                    "month (held, or the hold ended); the "
                                                    "whole month, not paged")
    totals: list[StatementTotalOut] = Field(description="one per currency")
# --- final amounts and invoices -------------------------------------------------------------


class LineItemOut(Out):
    position: int
    kind: str = Field(description="`call_out`, `labour` (quantity: minutes), `parts` or "
                                  "`surcharge`")
    description: str
    quantity: int
    unit_amount_cents: int = Field(description="labour: the hourly rate")
    amount_cents: int


class InvoiceOut(Out):
    id: int
    number: str = Field(description="e.g. INV-2026-000123")
    job_id: int
    status: str = Field(description="`hold` (money held), `in_review` (a final amount "
                                    "awaits approval), `approved`, `declined` (the worker "
                                    "may revise), `paid`, `void` (nothing charged)")
    amount_cents: int = Field(description="held, then the final amount, then what was "
                                          "charged")
    currency: str
    payer_user_id: int | None
    payer_organization_id: int | None
    org_id: int | None
    property_id: int | None
    decline_reason: str | None
    issued_at: datetime
    paid_at: datetime | None
    held_cents: int | None = Field(description="the hold at the payment provider")
    charged_cents: int | None
    refunded_cents: int | None
    line_items: list[LineItemOut]


class InvoiceListOut(PageOut):
    invoices: list[InvoiceOut]


class CompletionOut(Out):
    job_id: int
    job_status: str
    decision: Literal["auto_approved", "needs_approval", "needs_payer_approval"] = Field(
        description="`auto_approved`: charged on confirmation; `needs_payer_approval`: the "
                    "payer approves it on the job page; `needs_approval`: the "
                    "organization's approvers decide on /approvals")
    invoice: InvoiceOut
