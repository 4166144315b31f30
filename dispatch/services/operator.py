"""What an operator should look at first, counted for the landing page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.db.models import Job, Notification, OperatorAlert
from dispatch.domain.states import JobStatus
from notifications.states import GAVE_UP


@dataclass(frozen=True)
class Waiting:
    open_alerts: int
    failed_texts: int
    dispatching_jobs: int


def waiting(session: Session) -> Waiting:
    failed = session.execute(select(func.count()).select_from(Notification).where(
        Notification.status.in_([s.value for s in GAVE_UP]))).scalar_one()
    dispatching = session.execute(select(func.count()).select_from(Job).where(
        Job.status == JobStatus.DISPATCHING.value)).scalar_one()
    alerts = session.execute(select(func.count()).select_from(OperatorAlert).where(
        OperatorAlert.resolved_at.is_(None))).scalar_one()
    return Waiting(open_alerts=alerts, failed_texts=failed,
                   dispatching_jobs=dispatching)
