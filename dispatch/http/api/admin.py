"""Operator views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.http.api import bp
from dispatch.http.api.routing import registry
from dispatch.services import contact
from notifications.states import GAVE_UP, sql_list


class AlertOut(BaseModel):
    id: int
    kind: str
    job_id: int | None
    detail: dict[str, Any]
    created_at: datetime


class AlertListOut(BaseModel):
    alerts: list[AlertOut]


class NotificationOut(BaseModel):
    id: int
    event: str
    user_id: int | None = Field(description="null for a tenant's text: a unit's contact, "
                                            "not an account")
    job_id: int | None
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime


class NotificationListOut(BaseModel):
    notifications: list[NotificationOut]


@registry.route(bp, "/admin/notifications", "GET", summary="Notifications that failed for "
                "good (permanent refusals and exhausted retries), newest first",
                response=NotificationListOut, roles=(Role.ADMIN,))
def failed_notifications(user: User) -> NotificationListOut:
    rows = db.session.execute(db.text(
        "SELECT id, event, user_id, job_id, status, attempts, last_error, updated_at "
        "FROM notifications WHERE status IN "
        f"{sql_list(GAVE_UP)} "
        "ORDER BY updated_at DESC LIMIT 200")).mappings().all()
    return NotificationListOut(notifications=[NotificationOut(**r) for r in rows])


@registry.route(bp, "/admin/alerts", "GET", summary="Open operator alerts (e.g. a job that "
                "could not get a masked number)", response=AlertListOut, roles=(Role.ADMIN,))
def alerts(user: User) -> AlertListOut:
    return AlertListOut(alerts=[AlertOut(**a) for a in contact.open_alerts(db.session)])
