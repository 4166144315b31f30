"""Run side effects (queueing timers, pushes, SMS) only once the transaction that caused them
has committed: a rolled-back job must never have its offer timer queued or its push sent.

`on_commit(session, send, prepare)`: `prepare()` runs just before the commit, after the final
flush, while the session can still read (so payloads show exactly what is committed);
`send(prepared)` runs after the commit. Failures of `send` are logged, never raised: the
commit stands, and the sweeper repairs what a lost timer missed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from notifications import realtime

_KEY = "dispatch.after_commit"
_SCRATCH = "dispatch.transaction_scratch"
log = logging.getLogger(__name__)


def transaction_scratch(session: Session) -> dict[str, Any]:
    """State that lives as long as the current transaction (which jobs were already pushed,
    which were only written through the ORM): dropped at its commit or rollback."""
    real = session() if isinstance(session, scoped_session) else session
    scratch: dict[str, Any] = real.info.setdefault(_SCRATCH, {})
    return scratch


class _Pending:
    __slots__ = ("prepare", "prepared", "send")

    def __init__(self, send: Callable[[Any], None], prepare: Callable[[], Any] | None) -> None:
        self.send, self.prepare, self.prepared = send, prepare, None


def on_commit(session: Session, send: Callable[[Any], None],
              prepare: Callable[[], Any] | None = None) -> None:
    real = session() if isinstance(session, scoped_session) else session
    if not real.in_transaction():
        real.connection()  # begin now, so a rollback of this unit of work drops it too
    real.info.setdefault(_KEY, []).append(_Pending(send, prepare))


@event.listens_for(Session, "before_commit")
def _prepare(session: Session) -> None:
    # SQLAlchemy fires the commit events for a SAVEPOINT's release too: that is not the
    # commit the actions wait for.
    if session.in_nested_transaction():
        return
    pending = session.info.get(_KEY)
    if not pending:
        return
    session.flush()
    for item in pending:
        if item.prepare is not None:
            item.prepared = item.prepare()


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    """The transaction's pushes leave together, in one Redis round trip."""
    if session.in_nested_transaction():  # a SAVEPOINT released: the outer one is still open
        return
    session.info.pop(_SCRATCH, None)
    pending = session.info.pop(_KEY, [])
    if not pending:
        return
    with realtime.batched():
        for item in pending:
            try:
                item.send(item.prepared)
            except Exception:
                log.exception("after-commit action %r failed", item.send)


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction: Any) -> None:
    """Every rollback of the outer transaction drops its actions, even when nothing had
    reached the database yet (then `after_rollback` would not fire)."""
    if previous_transaction.nested:
        return
    session.info.pop(_KEY, None)
    session.info.pop(_SCRATCH, None)
