"""Where an operator lands: what is where, and what waits for them (the console proper comes
later)."""

from __future__ import annotations

from flask import render_template
from flask_login import login_required

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.http.pages import bp, require
from dispatch.services import operator


@bp.get("/admin")
@login_required
def admin_home() -> str:
    require(Role.ADMIN)
    return render_template("admin.html", waiting=operator.waiting(db.session))
