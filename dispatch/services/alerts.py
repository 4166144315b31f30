"""Operator alerts: something a person should look at. An alert is raised once per job and
cause while it is open (the partial unique index `ux_operator_alerts_open_cause`), however
often the cause is seen again, and resolved when its cause goes away (`sweep`, or the step
that removed it) or by an operator's hand (`resolve_by_hand`, who and when recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Job, MaskedSession, OperatorAlert, User
from dispatch.db.paging import Keyset, Page, PageRequest
from dispatch.domain.errors import Conflict, not_found, refusal
from dispatch.domain.states import FINAL_JOB_STATUSES

_OPEN = OperatorAlert.resolved_at.is_(None)


def raise_alert(session: Session, kind: str, job_id: int | None,
                detail: dict[str, Any]) -> bool:
    """In the caller's transaction; False when the same cause is already open for the job."""
    raised = session.execute(
        insert(OperatorAlert).values(kind=kind, job_id=job_id, detail=detail,
                                     created_at=clock.now())
        .on_conflict_do_nothing(index_elements=["job_id", "kind"], index_where=_OPEN)
        .returning(OperatorAlert.id)).scalar_one_or_none()
    return raised is not None


def resolve(session: Session, kind: str, job_id: int, resolution: str,
            now: datetime | None = None) -> int:
    """The cause went away (in the caller's transaction): its open alert is resolved."""
    return len(session.execute(
        update(OperatorAlert).where(_OPEN, OperatorAlert.kind == kind,
                                    OperatorAlert.job_id == job_id)
        .values(resolved_at=now or clock.now(), resolution=resolution)
        .returning(OperatorAlert.id)).scalars().all())


def open_alerts(session: Session, page: PageRequest) -> Page[OperatorAlert]:
    """Open operator alerts, newest first, a page at a time."""
    return _NEWEST_FIRST.page(session, select(OperatorAlert).where(_OPEN), page,
                              lambda alert: (alert.id,))


_NEWEST_FIRST = Keyset((OperatorAlert.id,), descending=True)


def resolve_by_hand(session: Session, alert_id: int, operator: User,
                    note: str | None) -> OperatorAlert:
    """An operator dealt with it. Resolving twice is a 409: someone else got there first."""
    alert = session.execute(select(OperatorAlert).where(OperatorAlert.id == alert_id)
                            .with_for_update()).scalar_one_or_none()
    if alert is None:
        raise not_found("alert")
    if alert.resolved_at is not None:
        session.rollback()
        raise refusal(Conflict, "alert_resolved", "alert", "alert.not_open")
    alert.resolved_at = clock.now()
    alert.resolved_by = operator.id
    alert.resolution = note or "resolved by an operator"
    session.commit()
    return alert


def sweep(session: Session) -> int:
    """Resolve open alerts whose cause is gone: the job ended; a masked number is open for
    it now, or nobody is assigned who would need one; a no-show's job has a worker again.
    Returns how many."""
    now = clock.now()
    job = select(Job.id).where(Job.id == OperatorAlert.job_id)
    causes = [
        ("the job ended",
         exists(job.where(Job.status.in_([s.value for s in FINAL_JOB_STATUSES])))),
        ("a masked number is open",
         (OperatorAlert.kind == "masking_unavailable")
         & exists().where(MaskedSession.job_id == OperatorAlert.job_id,
                          MaskedSession.closed_at.is_(None))),
        ("nobody is on the job to call",
         (OperatorAlert.kind == "masking_unavailable")
         & exists(job.where(Job.worker_id.is_(None)))),
        ("another worker took the job",
         (OperatorAlert.kind == "no_show")
         & exists(job.where(Job.worker_id.is_not(None)))),
    ]
    resolved = 0
    for resolution, gone in causes:
        resolved += len(session.execute(
            update(OperatorAlert).where(_OPEN, gone)
            .values(resolved_at=now, resolution=resolution)
            .returning(OperatorAlert.id)).scalars().all())
    session.commit()
    return resolved
