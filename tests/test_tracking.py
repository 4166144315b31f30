"""The position hot path: Redis checks, the active-job cache, and the batched writes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from redis import Redis

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.domain.commands import LocationIn
from dispatch.services import tracking
from tests.helpers import CENTER, Factory, book, job_body, sql


@pytest.fixture(autouse=True)
def own_pending_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live server that other tests start stays up for the session, on the same Redis
    and database, and flushes every pending fix it finds there every 0.2 s. These tests
    flush by hand and check what is still pending, so their fixes are pending under a key
    of their own, which no other process reads: same code, same Redis, no other flusher."""
    monkeypatch.setattr(tracking, "PENDING_KEY", f"{tracking.PENDING_KEY}:this-test")


def stored_at(app: Flask, worker_id: int) -> Any:
    return sql(app, "SELECT location_at FROM workers WHERE user_id = :w",
               w=worker_id)[0].location_at


def test_a_failed_flush_loses_nothing(app: Flask, make: Factory, manual_clock,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    worker_id, _ = make.user(Role.WORKER)
    with app.app_context():
        assert tracking.record_fix(db.session, worker_id,
                                   LocationIn(lat=37.78, lng=-122.41)).accepted

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("database went away")

        with monkeypatch.context() as m:
            m.setattr(db.session, "execute", broken)
            with pytest.raises(ConnectionError):
                tracking.flush_fixes(db.session)
        assert stored_at(app, worker_id) is None
        assert tracking.flush_fixes(db.session) == 1  # still pending: written next time
    assert stored_at(app, worker_id) == manual_clock.now


def test_a_fix_arriving_during_a_flush_stays_pending(app: Flask, make: Factory,
                                                   manual_clock) -> None:
    worker_id, _ = make.user(Role.WORKER)
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        tracking.record_fix(db.session, worker_id, LocationIn(lat=37.78, lng=-122.41))
        first = manual_clock.now
        original = tracking._script

        def newer_fix_lands_first(r: Redis, source: str) -> Any:
            if source == tracking._FORGET_FLUSHED:  # between the write and the forgetting
                manual_clock.advance(seconds=2)
                tracking.record_fix(db.session, worker_id, LocationIn(lat=37.7801, lng=-122.41))
            return original(r, source)

        tracking._script = newer_fix_lands_first  # type: ignore[assignment]
        try:
            assert tracking.flush_fixes(db.session) == 1
        finally:
            tracking._script = original  # type: ignore[assignment]
        assert stored_at(app, worker_id) == first
        assert redis.hexists(tracking.PENDING_KEY, worker_id)
        assert tracking.flush_fixes(db.session) == 1
    assert stored_at(app, worker_id) == manual_clock.now


def test_an_explicit_flush_writes_even_if_another_flusher_holds_the_worker(
    app: Flask, make: Factory, manual_clock
) -> None:
    """The HTTP ping path flushes its own worker: it must write even when a background
    flusher has already picked that worker and not written yet."""
    worker_id, _ = make.user(Role.WORKER)
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        tracking.record_fix(db.session, worker_id, LocationIn(lat=37.70, lng=-122.41))
        redis.hdel(tracking.PENDING_KEY, worker_id)  # as if another flusher were mid-write
        assert tracking.flush_fixes(db.session, [worker_id]) == 1
    assert stored_at(app, worker_id) == manual_clock.now


def test_a_stale_read_cannot_cache_an_ended_job(app: Flask, make: Factory, settings) -> None:
    """A ping that read 'job active' before a cancel commits must not cache it after."""
    from tests.helpers import set_settings

    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    client = app.test_client()
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker)
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        version = redis.get(tracking.active_job_version_key(worker_id)) or b"0"
        client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
        # The slow ping now writes what it read before the cancel: it must be refused.
        sql(app, "UPDATE jobs SET status = 'en_route' WHERE id = :j", j=job_id)
        assert tracking._load_active_job(db.session, redis_of(app), worker_id, version)
        sql(app, "UPDATE jobs SET status = 'cancelled' WHERE id = :j", j=job_id)
    assert redis.get(tracking.active_job_key(worker_id)) is None


def redis_of(app: Flask) -> Redis:
    from dispatch.infra.redis import redis_connection

    return redis_connection()


def test_positions_are_not_streamed_without_an_active_job(app: Flask, make: Factory) -> None:
    worker_id, _ = make.worker(lat=CENTER[0], lng=CENTER[1])
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        tracking.record_fix(db.session, worker_id, LocationIn(lat=CENTER[0], lng=CENTER[1]))
    assert redis.get(tracking.active_job_key(worker_id)) == b"-"


def test_the_sweeper_repairs_an_invalidation_lost_with_a_crashed_process(
    app: Flask, make: Factory, settings, manual_clock
) -> None:
    """'No active job' is cached for minutes; if the process that assigned the job died
    between its commit and Redis, the sweeper forgets the stale answer from the event log,
    once per status change."""
    from tests.helpers import set_settings

    set_settings(app, offer_wave_size=1)
    worker_id, worker = make.worker(lat=CENTER[0], lng=CENTER[1])
    _, resident = make.user(Role.RESIDENT)
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        tracking.sweep(db.session)  # the watermark starts now
        tracking.record_fix(db.session, worker_id, LocationIn(lat=CENTER[0], lng=CENTER[1]))
    assert redis.get(tracking.active_job_key(worker_id)) == b"-"
    client = app.test_client()
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    redis.set(tracking.active_job_key(worker_id), b"-")  # the lost invalidation
    with app.app_context():
        assert tracking.sweep(db.session) == 0  # too fresh: its commit may still be on its way
        manual_clock.advance(seconds=tracking.SWEEP_LAG.total_seconds() + 1)
        assert tracking.sweep(db.session) == 1
        assert redis.get(tracking.active_job_key(worker_id)) is None
        assert tracking.sweep(db.session) == 0  # each change is swept once
        manual_clock.advance(seconds=2)
        tracking.record_fix(db.session, worker_id, LocationIn(lat=CENTER[0], lng=CENTER[1]))
    assert redis.get(tracking.active_job_key(worker_id)).startswith(f"{job_id}|".encode())


def test_a_flush_skips_a_worker_whose_row_is_held_and_keeps_the_fix_pending(
    app: Flask, make: Factory, manual_clock
) -> None:
    """An accept holds its worker's row for its whole transaction. A flush that waited for
    it held every row it had locked meanwhile, and the accepts of all those workers queued
    behind it. The flush writes the others now and that worker's fix at the next flush."""
    from sqlalchemy import create_engine, text

    ids = sorted(make.user(Role.WORKER)[0] for _ in range(4))
    held = ids[1]
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        for worker_id in ids:
            tracking.record_fix(db.session, worker_id, LocationIn(lat=37.78, lng=-122.41))
        db.session.remove()
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(text("SELECT 1 FROM workers WHERE user_id = :w FOR UPDATE"),
                       {"w": held})
        with app.app_context():
            db.session.execute(text("SET LOCAL statement_timeout = '3s'"))  # a wait fails
            tracking.flush_fixes(db.session)
            db.session.remove()
        assert [stored_at(app, w) is not None for w in ids] == [True, False, True, True]
        assert redis.hexists(tracking.PENDING_KEY, held)
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    with app.app_context():
        tracking.flush_fixes(db.session)
    assert stored_at(app, held) == manual_clock.now
    assert not redis.hexists(tracking.PENDING_KEY, held)

