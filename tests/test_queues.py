"""Queues by purpose: each kind of work lands on its own queue, each worker group serves its
own queues, and the sweeper re-queues a stranded batch once per wait, not every sweep."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from dispatch.entrypoints.rq_worker import command
from dispatch.infra.queues import ALL_QUEUES, BATCHES, TIMERS, WORKER_GROUPS
from tests.helpers import Factory, ManualClock, sql
from tests.test_batches import add_unit
from tests.test_portfolio import manager_with_property


def queues_holding(app: Flask, rq_job_id: str) -> list[str]:
    conn = Redis.from_url(app.config["REDIS_URL"])
    return [name for name in ALL_QUEUES if rq_job_id in Queue(name, connection=conn).job_ids]


def test_every_queue_has_exactly_one_worker_group() -> None:
    served = [name for names in WORKER_GROUPS.values() for name in names]
    assert sorted(served) == sorted(ALL_QUEUES)
    assert WORKER_GROUPS["timers"] == (TIMERS,)  # timers share their worker with nothing
    args = command("batches", "redis://127.0.0.1:1/0", ["--burst"])
    assert args[1] == "worker" and args[-1] == BATCHES and "--burst" in args
    with pytest.raises(SystemExit):
        command("everything", "redis://127.0.0.1:1/0", [])


def test_a_batch_goes_on_the_batch_queue_and_is_requeued_once_per_wait(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock
) -> None:
    from dispatch.db import db
    from dispatch.services import batches

    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "Leak"}]
    batch_id = client.post("/api/v1/batches", json={"batch_key": "q", "rows": rows},
                           headers=pm).json["id"]
    assert queues_holding(app, f"batch-{batch_id}") == [BATCHES]
    with app.app_context():
        assert batches.sweep(db.session) == 0  # just queued: nobody has lost it yet
        manual_clock.advance(seconds=batches.REQUEUE_QUEUED_AFTER.total_seconds() + 1)
        assert batches.sweep(db.session) == 1  # lost with Redis, say: queued again
        assert batches.sweep(db.session) == 0  # and stamped: not again on the next sweep
        manual_clock.advance(seconds=batches.REQUEUE_QUEUED_AFTER.total_seconds() + 1)
        assert batches.sweep(db.session) == 1
    [row] = sql(app, "SELECT enqueued_at FROM batches WHERE id = :b", b=batch_id)
    assert row.enqueued_at == manual_clock.now
