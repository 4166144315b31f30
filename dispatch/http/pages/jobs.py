"""Book a job, and follow one."""

from __future__ import annotations

from flask import abort, current_app, render_template
from flask_login import current_user, login_required

from dispatch.db import clock, db
from dispatch.db.models import Job, Role, User
from dispatch.domain.errors import DomainError
from dispatch.domain.money import format_cents
from dispatch.http.api.shapes import job_out
from dispatch.http.pages import bp, require
from dispatch.services import contact, invoices, payments
from dispatch.services.catalog import bookable_groups
from dispatch.services.following import following
from dispatch.services.jobs import visible_job


@bp.get("/book")
@login_required
def book() -> str:
    require(Role.RESIDENT, Role.PROPERTY_MANAGER)
    settings = current_app.config["DISPATCH"]
    # With Stripe the card goes into Stripe Elements (Stripe's iframe): only the pm_... id
    # it makes reaches us. With the simulator, a choice of its test cards.
    stripe_key = (settings.stripe_publishable_key if settings.payment_provider == "stripe"
                  else None)
    return render_template("book.html", categories=bookable_groups(db.session),
                           payment_provider=settings.payment_provider,
                           stripe_publishable_key=stripe_key,
                           test_cards=[(token, _test_card_label(token, decline))
                                       for token, decline in payments.test_cards()]
                           if settings.payment_provider == "simulated" else [])


def _test_card_label(token: str, decline: str | None) -> str:
    """A test card in words ("Visa: declined, insufficient funds"); the token stays the
    option's value."""
    brand = ("Mastercard" if "mastercard" in token.lower()
             else "Visa" if "visa" in token.lower() else "Card")
    return f"{brand}: " + (f"declined, {decline.replace('_', ' ')}" if decline
                           else "succeeds")


@bp.get("/jobs/<int(min=1, max=9223372036854775807):job_id>")
@login_required
def job_page(job_id: int) -> str:
    user = db.session.get(User, current_user.id)
    assert user is not None
    try:
        job = visible_job(db.session, user, job_id)
    except DomainError:
        abort(404)  # strangers learn nothing, not even that the job exists
    # What this viewer may see (a worker sees the exact place only while the job is active).
    number = contact.masked_number(db.session, job) if Role(user.role) is not Role.ADMIN else None
    view = job_out(job, user, number, following(db.session, job, clock.now()))
    return render_template("job.html", job=job, view=view,
                           stale_after_s=current_app.config["DISPATCH"].position_stale_s)


@bp.get("/jobs/<int(min=1, max=9223372036854775807):job_id>/receipt")
@login_required
def job_receipt(job_id: int) -> str:
    """The printable invoice (a receipt once paid), for whoever booked the job."""
    user = db.session.get(User, current_user.id)
    assert user is not None
    try:
        found = invoices.for_payer(db.session, user, job_id)
    except DomainError:
        abort(404)
    job = db.session.get(Job, job_id)
    return render_template("receipt.html", found=found, job=job,
                           money=lambda cents: format_cents(cents, found.invoice.currency))
