"""The worker's completion form, the payer's word on a final amount, and invoices."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dispatch.db import db
from dispatch.db.models import Invoice, Role, User
from dispatch.domain.commands import INT4_MAX, CompleteIn, FinalAmountDecisionIn
from dispatch.domain.states import InvoiceStatus
from dispatch.http.api import bp
from dispatch.http.api.query import ASCII_INT, PageQuery, next_cursor
from dispatch.http.api.routing import ID8, registry
from dispatch.http.api.schemas import (
    CompletionOut,
    InvoiceListOut,
    InvoiceOut,
    JobOut,
    LineItemOut,
)
from dispatch.http.api.shapes import job_out
from dispatch.services import final_amount, invoices


def invoice_out(found: invoices.InvoiceView) -> InvoiceOut:
    inv, payment = found.invoice, found.payment
    return InvoiceOut(
        id=inv.id, number=inv.number, job_id=inv.job_id, status=inv.status,
        amount_cents=inv.amount_cents, currency=inv.currency,
        payer_user_id=inv.payer_user_id, payer_organization_id=inv.payer_organization_id,
        org_id=inv.org_id, property_id=inv.property_id, decline_reason=inv.decline_reason,
        issued_at=inv.issued_at, paid_at=inv.paid_at,
        held_cents=payment.held_cents if payment else None,
        charged_cents=payment.captured_cents if payment else None,
        refunded_cents=payment.refunded_cents if payment else None,
        line_items=[LineItemOut.model_validate(item) for item in found.items])


@registry.route(bp, f"/jobs/<{ID8}:job_id>/complete", "POST", summary="The assigned worker "
                "completes the job with its line items (or revises them)", body=CompleteIn,
                response=CompletionOut, roles=(Role.WORKER,), errors=[404, 409])
def post_complete(user: User, job_id: int, body: CompleteIn) -> CompletionOut:
    """From `arrived` or `in_progress`: minutes on site and parts; the server adds the
    call-out fee and the urgent surcharge from the category and prices the labour at
    `hourly_rate_cents` (default the category's low rate; outside the category's range is
    422 naming `hourly_rate_cents`; a bad part names e.g. `parts.1.amount_cents`). The
    total is the final amount, and the job is `completed`. Up to the hold plus
    FINAL_TOLERANCE_PERCENT (10) it is charged on confirmation (the hold grows if it must);
    above it the resident approves it on the job page; an organization's job above its
    hard limit goes to its approvers. While the amount is `in_review` or `declined`, the
    worker may send the form again to revise it; once approved or charged it is 409."""
    job, invoice, decision = final_amount.complete(db.session, user, job_id, body)
    return CompletionOut(job_id=job.id, job_status=job.status, decision=decision,
                         invoice=invoice_out(invoices.view(db.session, invoice)))


@registry.route(bp, f"/jobs/<{ID8}:job_id>/final-amount", "POST", summary="The resident "
                "approves or declines a final amount above the hold", body=FinalAmountDecisionIn,
                response=JobOut, roles=(Role.RESIDENT, Role.PROPERTY_MANAGER),
                errors=[402, 404, 409])
def post_final_amount(user: User, job_id: int, body: FinalAmountDecisionIn) -> JobOut:
    """`{"approve": true}`: the hold grows to the final amount (a card that declines it is
    402 naming `payment_method`) and confirming the work charges it. `{"approve": false,
    "reason": ...}`: the worker is told why and may revise. Nothing in review is 409
    `not_in_review`; an organization's job is its approvers' (409)."""
    job, _ = final_amount.payer_decides(db.session, user, job_id, body.approve, body.reason)
    return job_out(job, user)


@registry.route(bp, f"/jobs/<{ID8}:job_id>/invoice", "GET", summary="The job's invoice, for "
                "whoever booked it (a resident's receipt once paid) and its worker",
                response=InvoiceOut,
                roles=(Role.RESIDENT, Role.PROPERTY_MANAGER, Role.WORKER), errors=[404])
def get_job_invoice(user: User, job_id: int) -> InvoiceOut:
    return invoice_out(invoices.for_payer(db.session, user, job_id))


class InvoiceListQuery(PageQuery):
    status: InvoiceStatus | None = Field(None, description="only invoices in this status")
    property_id: Annotated[int, Field(ge=1, le=INT4_MAX), ASCII_INT] | None = Field(
        None, description="only this property's jobs' invoices")


@registry.route(bp, "/invoices", "GET", summary="The organization's invoices, newest first",
                response=InvoiceListOut, roles=(Role.PROPERTY_MANAGER,), errors=[409],
                query=InvoiceListQuery)
def list_invoices(user: User, query: InvoiceListQuery) -> InvoiceListOut:
    page = invoices.invoices_page(db.session, user, query.status, query.property_id,
                                  query.page())
    return InvoiceListOut(invoices=[_out(i) for i in page.items], next_cursor=next_cursor(page))


def _out(invoice: Invoice) -> InvoiceOut:
    return invoice_out(invoices.view(db.session, invoice))


@registry.route(bp, f"/invoices/<{ID8}:invoice_id>", "GET", summary="One of the "
                "organization's invoices", response=InvoiceOut, roles=(Role.PROPERTY_MANAGER,),
                errors=[404, 409])
def get_invoice(user: User, invoice_id: int) -> InvoiceOut:
    return invoice_out(invoices.for_manager(db.session, user, invoice_id))
