"""Batch repair requests for property managers (and property-management systems)."""

from __future__ import annotations

from flask import request

from dispatch.db import db
from dispatch.db.models import Batch, Job, Role, User
from dispatch.http.api import bp
from dispatch.http.api.routing import ID8, parse_body, registry
from dispatch.http.api.schemas import BatchIn, BatchJobOut, BatchOut, RowProblem
from dispatch.services import batches

PM = (Role.PROPERTY_MANAGER,)


def batch_out(batch: Batch, jobs: list[Job]) -> BatchOut:
    return BatchOut(
        id=batch.id, batch_key=batch.batch_key, status=batch.status,
        total_rows=batch.total_rows, processed_rows=batch.processed_rows,
        accepted_rows=len(batch.rows), rejected=[RowProblem(**r) for r in batch.rejected],
        jobs=[BatchJobOut(id=j.id, unit_id=j.unit_id, status=j.status, worker_id=j.worker_id)
              for j in jobs])


@registry.route(bp, "/batches", "POST", summary="Send a batch of repair requests (JSON, or "
                "text/csv with ?batch_key=)", response=BatchOut, status=202, roles=PM,
                errors=[400, 409, 422], extra_responses={200: BatchOut})
def post_batch(user: User) -> tuple[BatchOut, int]:
    """Every row is checked at once: the answer lists refused rows (line, field, problem)
    and the batch is processed in the background (follow `processed_rows`). CSV columns:
    property, unit, category, description[, urgency, budget_cap]; urgency is 'urgent' or a
    window such as 'tomorrow 09:00-12:00' (several windows may be chained for one worker);
    line numbers count the header as line 1. The same batch key answers 200 with the first batch."""
    if request.mimetype in ("text/csv", "text/plain"):
        rows = batches.parse_csv(request.get_data())
        submitted = batches.submit(db.session, user, request.args.get("batch_key"), rows, 2)
    else:
        body = parse_body(BatchIn)
        assert isinstance(body, BatchIn)
        submitted = batches.submit(db.session, user, body.batch_key, list(body.rows), 1)
    batch, jobs = batches.batch_view(db.session, user, submitted.batch.id)
    return batch_out(batch, jobs), 202 if submitted.created else 200


@registry.route(bp, f"/batches/<{ID8}:batch_id>", "GET", summary="A batch: progress, refused "
                "rows, and its jobs with their status", response=BatchOut, roles=PM,
                errors=[404])
def get_batch(user: User, batch_id: int) -> BatchOut:
    return batch_out(*batches.batch_view(db.session, user, batch_id))
