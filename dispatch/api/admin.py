"""Operator views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dispatch.api import bp
from dispatch.api.routing import registry
from dispatch.extensions import db
from dispatch.models import Role, User
from dispatch.services import contact


class AlertOut(BaseModel):
    id: int
    kind: str
    job_id: int | None
    detail: dict[str, Any]
    created_at: datetime


class AlertListOut(BaseModel):
    alerts: list[AlertOut]


@registry.route(bp, "/admin/alerts", "GET", summary="Open operator alerts (e.g. a job that "
                "could not get a masked number)", response=AlertListOut, roles=(Role.ADMIN,))
def alerts(user: User) -> AlertListOut:
    return AlertListOut(alerts=[AlertOut(**a) for a in contact.open_alerts(db.session)])
