"""Every job of a property manager (or a resident), live."""

from __future__ import annotations

from flask import render_template
from flask_login import login_required

from dispatch.db.models import Role
from dispatch.domain.states import JobStatus
from dispatch.http.pages import bp, require


@bp.get("/manage")
@login_required
def manage() -> str:
    require(Role.PROPERTY_MANAGER, Role.RESIDENT)
    return render_template("manage.html", statuses=[s.value for s in JobStatus])
