"""Every job of a property manager (or a resident), live."""

from __future__ import annotations

from flask import redirect, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from dispatch.db.models import Role
from dispatch.domain.states import JobStatus
from dispatch.http.pages import bp, require
from dispatch.http.pages.setup import organization_or_none


@bp.get("/manage")
@login_required
def manage() -> str | Response:
    require(Role.PROPERTY_MANAGER, Role.RESIDENT)
    if current_user.role == Role.PROPERTY_MANAGER and organization_or_none(current_user) is None:
        return redirect(url_for("web.organization"))  # nothing to watch before set-up
    return render_template("manage.html", statuses=[s.value for s in JobStatus])
