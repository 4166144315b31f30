"""A worker's shift on a phone."""

from __future__ import annotations

from flask import render_template
from flask_login import login_required

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.domain.commands import CANT_MAKE_IT_LABELS
from dispatch.http.pages import bp, require
from dispatch.services.catalog import bookable_groups


@bp.get("/work")
@login_required
def work() -> str:
    require(Role.WORKER)
    # The completion form's live total prices lines as the server will (final_amount.py).
    prices = {c.id: {"call_out": c.call_out_cents, "surcharge": c.urgent_surcharge_cents,
                     "low": c.hourly_low_cents, "high": c.hourly_high_cents}
              for _, group in bookable_groups(db.session) for c in group}
    return render_template("work.html", cant_make_it_reasons=CANT_MAKE_IT_LABELS,
                           prices=prices)


@bp.get("/work/profile")
@login_required
def work_profile() -> str:
    """Skills, travel and weekly hours: the page uses the worker API like the phone does."""
    require(Role.WORKER)
    return render_template("work_profile.html")


@bp.get("/earnings")
@login_required
def earnings() -> str:
    """Today's and this week's earnings, the balance, payouts: the page reads
    `GET /api/v1/worker/earnings` and asks for instant payouts like the phone does."""
    require(Role.WORKER)
    return render_template("earnings.html")
