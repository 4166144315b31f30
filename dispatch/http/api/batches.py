"""Batch repair requests for property managers (and property-management systems)."""

from __future__ import annotations

from typing import Annotated

from flask import request
from pydantic import Field

from dispatch.db import db
from dispatch.db.models import Batch, Job, Role, User
from dispatch.db.paging import Page, PageRequest
from dispatch.http.api import bp
from dispatch.http.api.query import (
    DEFAULT_PAGE,
    PageQuery,
    QueryBool,
    QueryParams,
    next_cursor,
)
from dispatch.http.api.routing import ID8, csv_upload, parse_body, registry
from dispatch.http.api.schemas import (
    BatchIn,
    BatchJobOut,
    BatchListOut,
    BatchOut,
    BatchSummaryOut,
    BulkCancelOut,
    CancelIn,
    RowProblem,
)
from dispatch.services import batches

PM = (Role.PROPERTY_MANAGER,)


def batch_out(batch: Batch, jobs: Page[Job]) -> BatchOut:
    return BatchOut(
        next_cursor=next_cursor(jobs, f"{bp.url_prefix}/batches/{batch.id}"),
        id=batch.id, batch_key=batch.batch_key, status=batch.status,
        total_rows=batch.total_rows, processed_rows=batch.processed_rows,
        accepted_rows=len(batch.rows), rejected=[RowProblem(**r) for r in batch.rejected],
        jobs=[BatchJobOut(id=j.id, unit_id=j.unit_id, status=j.status, worker_id=j.worker_id)
              for j in jobs.items])


class CsvBatchQuery(QueryParams):
    """For a CSV upload only: a JSON batch carries these in its body."""

    batch_key: Annotated[str | None, Field(
        min_length=1, max_length=200, description="CSV upload: the same key never creates "
                                                  "anything twice")] = None
    confirm_duplicate: QueryBool = Field(False, description="CSV upload: send rows already "
                                         "sent under another key again (otherwise 409)")


@registry.route(bp, "/batches", "POST", summary="Send a batch of repair requests (JSON, or "
                "text/csv with ?batch_key=)", response=BatchOut, status=202, roles=PM,
                errors=[400, 409, 415, 422], extra_responses={200: BatchOut},
                query=CsvBatchQuery,
                bodies={"application/json": BatchIn, **csv_upload(
                    "property,unit,category,description,urgency\n"
                    "Elm Court,1A,leak-repair,Water under the sink,urgent\n")})
def post_batch(user: User, query: CsvBatchQuery) -> tuple[BatchOut, int]:
    """Every row is checked at once: the answer lists refused rows (line, field, problem)
    and the batch is processed in the background (follow `processed_rows`). CSV columns:
    property, unit, category, description[, urgency, budget_cap]; urgency is 'urgent' or a
    window such as 'tomorrow 09:00-12:00' (several windows may be chained for one worker);
    line numbers count the header as line 1. The same batch key answers 200 with the first batch.
    The same rows under a new key answer 409 naming the batch they made (`duplicate_of`),
    unless `confirm_duplicate` (?confirm_duplicate=true for CSV) says to send them again."""
    if request.mimetype in ("text/csv", "text/plain"):
        rows = batches.parse_csv(request.get_data())
        submitted = batches.submit(db.session, user, query.batch_key, rows, 2,
                                   confirm_duplicate=query.confirm_duplicate)
    else:
        body = parse_body(BatchIn)
        assert isinstance(body, BatchIn)
        submitted = batches.submit(db.session, user, body.batch_key, list(body.rows), 1,
                                   confirm_duplicate=body.confirm_duplicate)
    first = PageRequest(DEFAULT_PAGE)
    batch, jobs = batches.batch_view(db.session, user, submitted.batch.id, first)
    return batch_out(batch, jobs), 202 if submitted.created else 200


@registry.route(bp, f"/batches/<{ID8}:batch_id>", "GET", summary="A batch: progress, refused "
                "rows, and its jobs with their status (a page at a time)", response=BatchOut,
                roles=PM, errors=[404], query=PageQuery)
def get_batch(user: User, batch_id: int, query: PageQuery) -> BatchOut:
    return batch_out(*batches.batch_view(db.session, user, batch_id, query.page()))


@registry.route(bp, "/batches", "GET", summary="The organization's batches, newest first, "
                "with their jobs counted by status", response=BatchListOut, roles=PM,
                errors=[409], query=PageQuery)
def list_batches(user: User, query: PageQuery) -> BatchListOut:
    page = batches.history(db.session, user, query.page())
    return BatchListOut(next_cursor=next_cursor(page), batches=[
        BatchSummaryOut(id=s.batch.id, batch_key=s.batch.batch_key, status=s.batch.status,
                        created_at=s.batch.created_at, total_rows=s.batch.total_rows,
                        accepted_rows=len(s.batch.rows), rejected_rows=len(s.batch.rejected),
                        processed_rows=s.batch.processed_rows,
                        jobs_by_status=s.jobs_by_status, open_jobs=s.open_jobs)
        for s in page.items])


@registry.route(bp, f"/batches/<{ID8}:batch_id>/cancel", "POST", summary="Cancel every job "
                "of the batch that may still be cancelled (each one recorded on its job)",
                body=CancelIn, response=BulkCancelOut, roles=PM, errors=[404, 409])
def cancel_batch(user: User, batch_id: int, body: CancelIn) -> BulkCancelOut:
    result = batches.cancel_open_jobs(db.session, user, batch_id, body.reason)
    return BulkCancelOut(cancelled=result.cancelled, kept=result.kept)
