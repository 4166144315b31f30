"""Run side effects (queueing timers, pushes, SMS) only once the transaction that caused them
has committed: a rolled-back job must never have its offer timer queued or its SMS sent."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "dispatch.after_commit"
log = logging.getLogger(__name__)


def on_commit(session: Session, action: Callable[[], None]) -> None:
    session.info.setdefault(_KEY, []).append(action)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    actions = session.info.pop(_KEY, [])
    for action in actions:
        try:
            action()
        except Exception:  # the commit stands; the sweeper repairs what a lost action missed
            log.exception("after-commit action %r failed", action)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
