"""The statuses of what this package sends: the SMS outbox (`notifications`) and the webhook
log (`webhook_deliveries`). Its SQL names them from here, and dispatch's models build their
CHECK constraints from here, so the words live in one place."""

from __future__ import annotations

from enum import StrEnum


class NotificationStatus(StrEnum):
    """An outbox message (table `notifications`): sent by an RQ job, then tracked by Twilio's
    status callbacks; `skipped` when it expired or the number opted out before sending."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    SKIPPED = "skipped"


class DeliveryStatus(StrEnum):
    """An outgoing webhook delivery to an organization (table `webhook_deliveries`)."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


# Texts that failed for good (refused for good, or retries exhausted): an operator's to see.
GAVE_UP = (NotificationStatus.FAILED, NotificationStatus.UNDELIVERED)

# Rows waiting for an attempt (first, or again after a failure). Both tables use these words
# (and `sending`) for their attempts, so `stranded` serves both.
WAITING = (NotificationStatus.QUEUED, NotificationStatus.RETRYING)


def sql_list(statuses: frozenset[StrEnum] | tuple[StrEnum, ...]) -> str:
    """Statuses as a SQL list literal for statements written as text: `('queued', 'retrying')`."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"
