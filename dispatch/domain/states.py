"""The state machines of jobs, offers, worker availability and batches: the only place that
says which moves are legal and who may make them. Services ask here before they change a
status, and bulk updates go through `dispatch.db.job_rows`, which asks here too. (The SMS
outbox's and the webhook log's statuses live with the package that sends them:
`notifications.states`.)"""

from __future__ import annotations

from enum import StrEnum

from dispatch.domain.errors import IllegalTransition


class JobStatus(StrEnum):
    REQUESTED = "requested"
    DISPATCHING = "dispatching"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ARRIVED = "arrived"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    UNFILLED = "unfilled"
    DISPUTED = "disputed"


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class PaymentStatus(StrEnum):
    """A job's escrow at the payment provider (`job_payments`): held from booking until it
    is released to the worker, voided (given back whole), or expired at the provider."""

    HELD = "held"
    RELEASED = "released"  # captured: the worker's share, the fee, the rest refunded
    VOIDED = "voided"  # the authorization cancelled: nothing charged
    EXPIRED = "expired"  # the provider let the hold lapse (7 days) before anything happened


PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.HELD: frozenset(
        {PaymentStatus.RELEASED, PaymentStatus.VOIDED, PaymentStatus.EXPIRED}),
}


def check_payment_transition(current: str, target: PaymentStatus) -> None:
    if target not in PAYMENT_TRANSITIONS.get(PaymentStatus(current), frozenset()):
        raise IllegalTransition("payment", current, target.value)


class MilestoneStatus(StrEnum):
    """One stage of a job paid in stages (`job_milestones`). Each stage has its own hold (a
    card authorization is captured once and lapses after 7 days): planned until the stage
    before it is released (the first is held at booking), held while the worker does it,
    done when they say so, released when the payer confirms (or by itself after
    AUTO_RELEASE_HOURS); a cancelled job ends its held stage by the cancellation rules and
    drops the planned ones."""

    PLANNED = "planned"
    HELD = "held"
    DONE = "done"
    RELEASED = "released"  # captured: the worker's share less the fee
    CANCELLED = "cancelled"  # the job was called off: hold voided (or the cancel fee taken)


MILESTONE_TRANSITIONS: dict[MilestoneStatus, frozenset[MilestoneStatus]] = {
    MilestoneStatus.PLANNED: frozenset({MilestoneStatus.HELD, MilestoneStatus.CANCELLED}),
    # back to planned: the provider let the hold lapse (7 days); it is held again at once
    MilestoneStatus.HELD: frozenset({MilestoneStatus.DONE, MilestoneStatus.CANCELLED,
                                     MilestoneStatus.PLANNED}),
    MilestoneStatus.DONE: frozenset({MilestoneStatus.RELEASED, MilestoneStatus.CANCELLED}),
}


def check_milestone_transition(current: MilestoneStatus | str,
                               target: MilestoneStatus | str) -> None:
    if MilestoneStatus(target) not in MILESTONE_TRANSITIONS.get(MilestoneStatus(current),
                                                                frozenset()):
        raise IllegalTransition("milestone", str(current), str(target))


class BatchStatus(StrEnum):
    """A property manager's batch: queued for its worker, being processed (again, after a
    worker died), done, or failed for good after its retries."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.QUEUED: frozenset({BatchStatus.PROCESSING, BatchStatus.FAILED}),
    BatchStatus.PROCESSING: frozenset(
        {BatchStatus.PROCESSING, BatchStatus.DONE, BatchStatus.FAILED}),
    # Processing is safe to repeat: a failed batch run again picks up where it stopped.
    BatchStatus.FAILED: frozenset({BatchStatus.PROCESSING}),
}
# Nobody works on these any more: their jobs go to the ordinary cascade.
BATCH_ENDED: frozenset[BatchStatus] = frozenset({BatchStatus.DONE, BatchStatus.FAILED})


class InvitationStatus(StrEnum):
    """A manager's invitation to a worker to become the organization's preferred contractor:
    only the worker's accept makes them one."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


INVITATION_TRANSITIONS: dict[InvitationStatus, frozenset[InvitationStatus]] = {
    InvitationStatus.PENDING: frozenset(
        {InvitationStatus.ACCEPTED, InvitationStatus.DECLINED, InvitationStatus.WITHDRAWN}),
}


class PayoutStatus(StrEnum):
    """A worker's payout: recorded (`requested`, money already out of the balance) before the
    provider is asked, so a crash between the two leaves a row the sweeper retries with the
    same key; `in_transit` once the provider took it; then the bank's answer."""

    REQUESTED = "requested"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"


PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.REQUESTED: frozenset({PayoutStatus.IN_TRANSIT, PayoutStatus.FAILED,
                                       # the bank's answer may overtake the provider's reply
                                       PayoutStatus.PAID}),
    PayoutStatus.IN_TRANSIT: frozenset({PayoutStatus.PAID, PayoutStatus.FAILED}),
}


class ApprovalStatus(StrEnum):
    """A final amount above an organization's hard limit, waiting for one of its managers:
    decided once, by one of them."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


APPROVAL_TRANSITIONS: dict[ApprovalStatus, frozenset[ApprovalStatus]] = {
    ApprovalStatus.PENDING: frozenset({ApprovalStatus.APPROVED, ApprovalStatus.DECLINED}),
}


def check_approval_transition(current: ApprovalStatus | str,
                              target: ApprovalStatus | str) -> None:
    if ApprovalStatus(target) not in APPROVAL_TRANSITIONS.get(ApprovalStatus(current),
                                                              frozenset()):
        raise IllegalTransition("approval", str(current), str(target))


class InvoiceStatus(StrEnum):
    """A job's invoice (one per job, `services.invoices`): opened with the hold at booking;
    in review while a final amount above what is approved by itself waits for the payer
    (a resident) or one of the organization's managers; paid when the money is captured;
    void when the job ended charging nothing (cancelled for free, unfilled, hold lapsed)."""

    HOLD = "hold"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    DECLINED = "declined"
    PAID = "paid"
    VOID = "void"


INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.HOLD: frozenset(
        {InvoiceStatus.IN_REVIEW, InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.IN_REVIEW: frozenset(
        {InvoiceStatus.APPROVED, InvoiceStatus.DECLINED, InvoiceStatus.VOID}),
    # The worker revises the line items; the revision is reviewed again.
    InvoiceStatus.DECLINED: frozenset({InvoiceStatus.IN_REVIEW, InvoiceStatus.VOID}),
    InvoiceStatus.APPROVED: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
}
# A final amount waiting for someone's word: nothing may be charged meanwhile.
INVOICE_AWAITING: frozenset[InvoiceStatus] = frozenset(
    {InvoiceStatus.IN_REVIEW, InvoiceStatus.DECLINED})


def check_invoice_transition(current: InvoiceStatus | str, target: InvoiceStatus | str) -> None:
    if InvoiceStatus(target) not in INVOICE_TRANSITIONS.get(InvoiceStatus(current),
                                                            frozenset()):
        raise IllegalTransition("invoice", str(current), str(target))


class Availability(StrEnum):
    OFFLINE = "offline"
    ONLINE = "online"
    BUSY = "busy"


# The worker's own switch (online/offline), and the platform's busy while they hold a job.
AVAILABILITY_TRANSITIONS: dict[Availability, frozenset[Availability]] = {
    Availability.OFFLINE: frozenset({Availability.ONLINE,
                                     # setting out for a booked window takes them, online or not
                                     Availability.BUSY}),
    Availability.ONLINE: frozenset({Availability.OFFLINE, Availability.BUSY}),
    # The job ended (a worker holding one cannot go offline: `set_availability` refuses).
    Availability.BUSY: frozenset({Availability.ONLINE}),
}


class Actor(StrEnum):
    """Who moves a job: the side that asked, the side that works, the platform, an operator."""

    RESIDENT = "resident"
    WORKER = "worker"
    SYSTEM = "system"
    ADMIN = "admin"


J = JobStatus
_R, _W, _S, _A = Actor.RESIDENT, Actor.WORKER, Actor.SYSTEM, Actor.ADMIN

# (from, to) -> actors allowed to make that move.  Money (`closed`) and disputes arrive with
# their own issues; their edges are here so the map stays whole.
JOB_TRANSITIONS: dict[tuple[JobStatus, JobStatus], frozenset[Actor]] = {
    (J.REQUESTED, J.DISPATCHING): frozenset({_S}),
    (J.REQUESTED, J.UNFILLED): frozenset({_S}),
    (J.REQUESTED, J.CANCELLED): frozenset({_R, _S, _A}),
    (J.DISPATCHING, J.ASSIGNED): frozenset({_S}),
    (J.DISPATCHING, J.UNFILLED): frozenset({_S}),
    (J.DISPATCHING, J.CANCELLED): frozenset({_R, _S, _A}),
    # Back to the cascade, before the worker arrives: a job queued behind one that runs
    # long, or a worker who never came (the system, `hand_back.sweep_no_shows`), or a
    # worker who cannot make it or gives the job back (the worker, `hand_back`).
    (J.ASSIGNED, J.DISPATCHING): frozenset({_S, _W}),
    (J.EN_ROUTE, J.DISPATCHING): frozenset({_S, _W}),
    (J.ASSIGNED, J.EN_ROUTE): frozenset({_W}),
    (J.ASSIGNED, J.ARRIVED): frozenset({_W}),
    # The system calls off a job whose hold, placed again, the card declined
    # (services/reauthorization.py): nobody would pay for the work.
    (J.ASSIGNED, J.CANCELLED): frozenset({_R, _S, _A}),
    (J.EN_ROUTE, J.ARRIVED): frozenset({_W}),
    (J.EN_ROUTE, J.CANCELLED): frozenset({_R, _A}),
    (J.ARRIVED, J.IN_PROGRESS): frozenset({_W}),
    (J.ARRIVED, J.CANCELLED): frozenset({_A}),
    # A job paid in stages stopped between stages (services/milestones.py): paid stages
    # stay paid, the held one follows the cancellation rules.
    (J.IN_PROGRESS, J.CANCELLED): frozenset({_A}),
    (J.IN_PROGRESS, J.COMPLETED): frozenset({_W}),
    (J.IN_PROGRESS, J.DISPUTED): frozenset({_R, _A}),
    # The payer confirms the work is done (escrow released), or the system does it for them
    # after AUTO_RELEASE_HOURS (services/escrow.py).
    (J.COMPLETED, J.CLOSED): frozenset({_R, _S, _A}),
    (J.COMPLETED, J.DISPUTED): frozenset({_R, _W, _A}),
    (J.DISPUTED, J.CLOSED): frozenset({_A}),
}

# A job in one of these has a worker on it (assigned, on the way or working).
ACTIVE_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {J.ASSIGNED, J.EN_ROUTE, J.ARRIVED, J.IN_PROGRESS}
)
# A worker is on the way: the resident sees a live ETA.
COMING_STATUSES: frozenset[JobStatus] = frozenset({J.ASSIGNED, J.EN_ROUTE})
# A worker may say "I can't make it" until they arrive; "give this job back" only before
# they set out (services/hand_back.py says why the two differ).
CANT_MAKE_IT_STATUSES: frozenset[JobStatus] = COMING_STATUSES
GIVE_BACK_STATUSES: frozenset[JobStatus] = frozenset({J.ASSIGNED})
# The work was done (money and disputes may follow).
DONE_STATUSES: frozenset[JobStatus] = frozenset({J.COMPLETED, J.CLOSED})
# A worker who has set out is taken, whatever kind of job it is.
UNDER_WAY_STATUSES: frozenset[JobStatus] = frozenset({J.EN_ROUTE, J.ARRIVED, J.IN_PROGRESS})
# Once here the work is over (money and disputes may follow): the worker is free again,
# offers no longer matter, and `ended_at` is stamped the first time.
FINAL_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {J.COMPLETED, J.CLOSED, J.CANCELLED, J.UNFILLED, J.DISPUTED}
)

OFFER_TRANSITIONS: dict[OfferStatus, frozenset[OfferStatus]] = {
    OfferStatus.PENDING: frozenset(
        {OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.EXPIRED, OfferStatus.WITHDRAWN}
    ),
    # A queued job taken back from its worker, who could no longer come in time.
    OfferStatus.ACCEPTED: frozenset({OfferStatus.WITHDRAWN}),
}


def occupies_worker(urgency: str, status: JobStatus | str, queued: bool = False) -> bool:
    """Whether this job keeps its worker busy. An urgent job does from the accept (they
    leave now), unless it is queued behind the job they are finishing; a scheduled one only
    once the worker sets out, so between accepting tomorrow's window and leaving for it they
    can take urgent work. The database enforces one occupying job per worker
    (`ux_jobs_one_occupying_per_worker`, migrations 0009 and 0014)."""
    status = JobStatus(status)
    if urgency == "urgent":
        return status in ACTIVE_JOB_STATUSES and not (queued and status is JobStatus.ASSIGNED)
    return status in UNDER_WAY_STATUSES


def check_job_transition(current: JobStatus | str, target: JobStatus | str, actor: Actor) -> None:
    allowed = JOB_TRANSITIONS.get((JobStatus(current), JobStatus(target)))
    if allowed is None or actor not in allowed:
        raise IllegalTransition("job", str(current), str(target), str(actor))


def check_invitation_transition(current: InvitationStatus | str,
                                target: InvitationStatus | str) -> None:
    if InvitationStatus(target) not in INVITATION_TRANSITIONS.get(InvitationStatus(current),
                                                                  frozenset()):
        raise IllegalTransition("invitation", str(current), str(target))


def cancellable_by(actor: Actor) -> list[JobStatus]:
    """The statuses this actor may cancel a job from, read off the map (a bulk cancel's
    WHERE and its re-check under the row lock)."""
    return [current for (current, target), actors in JOB_TRANSITIONS.items()
            if target is J.CANCELLED and actor in actors]


def check_offer_transition(current: OfferStatus | str, target: OfferStatus | str) -> None:
    if OfferStatus(target) not in OFFER_TRANSITIONS.get(OfferStatus(current), frozenset()):
        raise IllegalTransition("offer", str(current), str(target))


def moves_for(actor: Actor) -> dict[str, list[str]]:
    """Each status's legal next statuses for this actor, in the map's order."""
    moves: dict[str, list[str]] = {}
    for (current, target), actors in JOB_TRANSITIONS.items():
        if actor in actors:
            moves.setdefault(current.value, []).append(target.value)
    return moves


def _values(statuses: frozenset[JobStatus]) -> list[str]:
    return [s.value for s in JobStatus if s in statuses]


def client_state_lists() -> dict[str, object]:
    """The status lists pages need, from this module only (base.html hands them to the
    scripts as `window.DISPATCH_STATES`), so no script keeps a copy of its own."""
    return {
        "active": _values(ACTIVE_JOB_STATUSES),
        "under_way": _values(UNDER_WAY_STATUSES),
        "coming": _values(COMING_STATUSES),
        "done": _values(DONE_STATUSES),
        "final": _values(FINAL_JOB_STATUSES),
        "resident_moves": moves_for(Actor.RESIDENT),
        "worker_moves": moves_for(Actor.WORKER),
        "cant_make_it": _values(CANT_MAKE_IT_STATUSES),
        "give_back": _values(GIVE_BACK_STATUSES),
    }


def check_availability_transition(current: Availability | str,
                                  target: Availability | str) -> None:
    if Availability(current) == Availability(target):
        return  # going online while online changes nothing
    if Availability(target) not in AVAILABILITY_TRANSITIONS.get(Availability(current),
                                                                 frozenset()):
        raise IllegalTransition("availability", str(current), str(target))


def availability_from(target: Availability) -> list[str]:
    """Every availability that may move to `target`: a bulk update's WHERE, from the map."""
    return [a.value for a in Availability if target in AVAILABILITY_TRANSITIONS.get(a, ())]


def check_batch_transition(current: BatchStatus | str, target: BatchStatus | str) -> None:
    if BatchStatus(target) not in BATCH_TRANSITIONS.get(BatchStatus(current), frozenset()):
        raise IllegalTransition("batch", str(current), str(target))


def payout_from(target: PayoutStatus) -> list[str]:
    """Every payout status that may move to `target`: a guarded UPDATE's WHERE, from the map."""
    return [s.value for s in PayoutStatus if target in PAYOUT_TRANSITIONS.get(s, ())]


def sql_in(statuses: frozenset[StrEnum] | tuple[StrEnum, ...]) -> str:
    """A status set as a SQL list literal, for statements written as text (and partial index
    predicates, which the planner matches only against literals): `('completed', 'closed')`."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"

