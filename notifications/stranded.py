"""Finding outgoing rows nobody is working on, shared by the SMS outbox and the webhook log
(both have id, status queued/sending/retrying and updated_at)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from notifications.states import NotificationStatus as N

# Anything 'sending' this long ago has no sender any more (a send times out much sooner).
SENDING_STALE = timedelta(minutes=5)
# Queued rows are normally picked up within seconds; this long means the queue never got them.
QUEUED_STALE = timedelta(minutes=2)


def requeue_stranded(session: Session, table: Literal["notifications", "webhook_deliveries"],
                     now: datetime, retrying_stale: timedelta, limit: int = 500) -> list[int]:
    """Rows queued but never handed to the queue, retrying past the longest backoff (the
    retry was lost), or 'sending' with a dead sender (set back to retrying). Returns their
    ids for queueing again, and stamps them so the next sweep does not pick them at once."""
    session.execute(text(
        f"UPDATE {table} SET status = '{N.RETRYING}', updated_at = :now "
        f"WHERE status = '{N.SENDING}' AND updated_at < :sending_before"),
        {"now": now, "sending_before": now - SENDING_STALE})
    ids = session.execute(text(f"""
SELECT id FROM {table}
 WHERE (status = '{N.QUEUED}' AND updated_at < :queued_before)
    OR (status = '{N.RETRYING}' AND updated_at < :retrying_before)
 ORDER BY id LIMIT :limit"""), {"queued_before": now - QUEUED_STALE,
                                "retrying_before": now - retrying_stale, "limit": limit}
    ).scalars().all()
    session.execute(text(f"UPDATE {table} SET updated_at = :now WHERE id = ANY(:ids)"),
                    {"now": now, "ids": list(ids)})
    session.commit()
    return list(ids)
