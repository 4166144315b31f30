"""Operator views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.db.paging import cut
from dispatch.domain.commands import Command
from dispatch.http.api import bp
from dispatch.http.api.query import PageQuery, next_cursor
from dispatch.http.api.routing import ID8, registry
from dispatch.http.api.schemas import PageOut
from dispatch.services import alerts as alerts_service
from notifications.states import GAVE_UP, sql_list


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    job_id: int | None
    detail: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: int | None = Field(None, description="the operator who resolved it; null "
                                                      "when its cause went away by itself")
    resolution: str | None = None


class ResolveAlertIn(Command):
    note: Annotated[str | None, Field(max_length=500, description="what was done")] = None


class AlertListOut(PageOut):
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


class NotificationListOut(PageOut):
    notifications: list[NotificationOut]


@registry.route(bp, "/admin/notifications", "GET", summary="Notifications that failed for "
                "good (permanent refusals and exhausted retries), newest first",
                response=NotificationListOut, roles=(Role.ADMIN,), query=PageQuery)
def failed_notifications(user: User, query: PageQuery) -> NotificationListOut:
    request = query.page()
    rows = db.session.execute(db.text(
        "SELECT id, event, user_id, job_id, status, attempts, last_error, updated_at "
        "FROM notifications WHERE status IN "
        f"{sql_list(GAVE_UP)} "
        "AND (CAST(:at AS timestamptz) IS NULL OR (updated_at, id) < (:at, :id)) "
        "ORDER BY updated_at DESC, id DESC LIMIT :n"),
        {"n": request.limit + 1,
         "at": datetime.fromisoformat(request.after[0]) if request.after else None,
         "id": request.after[1] if request.after else None}).mappings().all()
    page = cut(rows, request.limit, lambda r: (r["updated_at"], r["id"]))
    return NotificationListOut(notifications=[NotificationOut(**r) for r in page.items],
                               next_cursor=next_cursor(page))


@registry.route(bp, "/admin/alerts", "GET", summary="Open operator alerts (e.g. a job that "
                "could not get a masked number), newest first", response=AlertListOut,
                roles=(Role.ADMIN,), query=PageQuery)
def alerts(user: User, query: PageQuery) -> AlertListOut:
    page = alerts_service.open_alerts(db.session, query.page())
    return AlertListOut(alerts=[AlertOut.model_validate(a) for a in page.items],
                        next_cursor=next_cursor(page))


@registry.route(bp, f"/admin/alerts/<{ID8}:alert_id>/resolve", "POST",
                summary="Resolve an open alert by hand (who and when are recorded)",
                body=ResolveAlertIn, response=AlertOut, roles=(Role.ADMIN,), errors=[404, 409])
def resolve_alert(user: User, alert_id: int, body: ResolveAlertIn) -> AlertOut:
    """Alerts also resolve by themselves when their cause goes away (the job ends, a masked
    number opens, another worker takes a no-show's job). Resolving one already resolved is
    409 `alert_resolved`."""
    return AlertOut.model_validate(
        alerts_service.resolve_by_hand(db.session, alert_id, user, body.note))
