"""Races against the real database with real threads: exactly one winner, never a double
booking, one job per idempotency key. Each thread uses its own request, app context,
session and pooled connection, as concurrent web requests do."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, book, job_body, offset, set_settings, sql

THREADS = 24


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (released together by a barrier); return results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # surfaced by the assertions below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_many_workers_accept_one_job_exactly_one_wins(app: Flask, make: Factory,
                                                      settings) -> None:
    set_settings(app, offer_wave_size=THREADS)
    crew = [make.worker(lat=offset(*CENTER, north_m=50 * i)[0]) for i in range(THREADS)]
    _, resident = make.user(Role.RESIDENT)
    job_id = book(app.test_client(), resident, job_body(make.category("leak-repair"))).json["id"]
    offers = dict(sql(app, "SELECT worker_id, id FROM offers WHERE job_id = :j", j=job_id))
    assert len(offers) == THREADS

    def accept(worker_id: int, headers: dict[str, str]) -> Callable[[], int]:
        return lambda: app.test_client().post(
            f"/api/v1/offers/{offers[worker_id]}/accept", headers=headers).status_code

    codes = race([accept(w, h) for w, h in crew])
    assert Counter(codes) == {200: 1, 409: THREADS - 1}, codes
    winner = crew[codes.index(200)][0]
    job = sql(app, "SELECT status, worker_id FROM jobs WHERE id = :j", j=job_id)[0]
    assert (job.status, job.worker_id) == ("assigned", winner)
    statuses = Counter(r.status for r in sql(app, "SELECT status FROM offers WHERE job_id = :j",
                                             j=job_id))
    assert statuses == {"accepted": 1, "withdrawn": THREADS - 1}
    busy = [r.user_id for r in sql(app, "SELECT user_id FROM workers WHERE availability = "
                                        "'busy'")]
    assert busy == [winner]
    assigned = sql(app, "SELECT count(*) AS n FROM job_events WHERE job_id = :j "
                        "AND to_status = 'assigned'", j=job_id)[0].n
    assert assigned == 1


def assert_one_current_and_at_most_one_queued(app: Flask) -> None:
    """The invariant accepts keep: per worker one current job and at most one queued, the
    queued one behind that current one; per job one worker."""
    rows = sql(app, "SELECT id, worker_id, queued_behind_job_id FROM jobs "
                    "WHERE status IN ('assigned', 'en_route', 'arrived', 'in_progress')")
    current = {r.worker_id: r.id for r in rows if r.queued_behind_job_id is None}
    assert len(current) == sum(r.queued_behind_job_id is None for r in rows)
    queued = [r for r in rows if r.queued_behind_job_id is not None]
    assert len({r.worker_id for r in queued}) == len(queued)
    assert all(current.get(r.worker_id) == r.queued_behind_job_id for r in queued)


@pytest.mark.parametrize("queue_behind_busy", [False, True], ids=["one-job", "with-queue"])
def test_one_worker_accepting_many_jobs_at_once_gets_exactly_one(
        app: Flask, make: Factory, settings, queue_behind_busy: bool) -> None:
    """Exactly one win, with queueing on or off: these offers reached the worker while
    they were free, so none of them may queue behind the job the winner became."""
    set_settings(app, offer_wave_size=1, queue_behind_busy=queue_behind_busy)
    worker_id, worker = make.worker()
    leak = make.category("leak-repair")
    job_ids = []
    for _ in range(THREADS):
        _, resident = make.user(Role.RESIDENT)
        job_ids.append(book(app.test_client(), resident, job_body(leak)).json["id"])
    offer_ids = [r.id for r in sql(app, "SELECT id FROM offers WHERE worker_id = :w AND "
                                        "status = 'pending' ORDER BY job_id", w=worker_id)]
    assert len(offer_ids) == THREADS

    def accept(offer_id: int) -> Callable[[], int]:
        return lambda: app.test_client().post(f"/api/v1/offers/{offer_id}/accept",
                                              headers=worker).status_code

    codes = race([accept(o) for o in offer_ids])
    wins = codes.count(200)
    assert set(codes) <= {200, 409}, codes
    assert wins == 1, codes
    active = sql(app, "SELECT id FROM jobs WHERE worker_id = :w AND status IN "
                      "('assigned', 'en_route', 'arrived', 'in_progress')", w=worker_id)
    assert len(active) == wins
    assert_one_current_and_at_most_one_queued(app)
    assert sql(app, "SELECT count(*) AS n FROM offers WHERE worker_id = :w AND "
                    "status = 'accepted'", w=worker_id)[0].n == wins
    # Every other job moved on (its only candidate is taken): none holds a dead offer;
    # each waits for a worker to come free, and says so.
    others = Counter(r.status for r in sql(app, "SELECT status FROM jobs WHERE NOT (id = ANY(:j))",
                                           j=[a.id for a in active]))
    assert others == {"dispatching": THREADS - wins}
    assert sql(app, "SELECT count(*) AS n FROM offers WHERE status = 'pending'")[0].n == 0
    assert sql(app, "SELECT count(DISTINCT job_id) AS n FROM job_events "
                    "WHERE kind = 'waiting_for_workers'")[0].n == THREADS - wins


def test_accepts_racing_across_many_jobs_never_double_book(app: Flask, make: Factory,
                                                           settings) -> None:
    """Six workers, six jobs, every worker offered every job, all accepting everything at
    once: each worker ends with at most one current job (and one queued behind it), each
    job with at most one worker."""
    set_settings(app, offer_wave_size=6)
    spots = [offset(*CENTER, east_m=70 * i) for i in range(6)]
    crew = [make.worker(lat=lat, lng=lng) for lat, lng in spots]
    leak = make.category("leak-repair")
    for _ in range(6):
        _, resident = make.user(Role.RESIDENT)
        assert book(app.test_client(), resident, job_body(leak)).status_code == 201
    offers = sql(app, "SELECT id, worker_id FROM offers ORDER BY id")
    headers = dict(crew)
    assert len(offers) == 36

    def accept(offer_id: int, worker_id: int) -> Callable[[], int]:
        return lambda: app.test_client().post(f"/api/v1/offers/{offer_id}/accept",
                                              headers=headers[worker_id]).status_code

    codes = race([accept(o.id, o.worker_id) for o in offers])
    assert 500 not in codes and not any(isinstance(c, Exception) for c in codes), codes
    rows = sql(app, "SELECT id, worker_id FROM jobs WHERE status = 'assigned'")
    assert len(rows) == codes.count(200) >= 1
    assert_one_current_and_at_most_one_queued(app)
    accepted = sql(app, "SELECT job_id, worker_id FROM offers WHERE status = 'accepted'")
    assert sorted((a.job_id, a.worker_id) for a in accepted) == sorted(
        (r.id, r.worker_id) for r in rows)


def test_same_idempotency_key_from_many_threads_creates_one_job(app: Flask, make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    body = job_body(make.category("leak-repair"))

    def tap() -> tuple[int, int]:
        r = book(app.test_client(), resident, body, key="double-tap")
        return r.status_code, r.json["id"]

    results = race([tap for _ in range(THREADS)])
    assert all(isinstance(r, tuple) for r in results), results
    codes = Counter(code for code, _ in results)
    assert codes == {201: 1, 200: THREADS - 1}, codes
    assert len({job_id for _, job_id in results}) == 1
    assert sql(app, "SELECT count(*) AS n FROM jobs")[0].n == 1
    assert sql(app, "SELECT count(*) AS n FROM offers")[0].n == 1


def test_one_worker_accepting_clashing_windows_at_once_keeps_only_one(
    app: Flask, make: Factory, settings
) -> None:
    """Twenty booked windows that no one could keep two of (hour-long jobs, all in the same
    half hour) are all offered to one plumber, who accepts them all at once. The window check
    reads what the worker holds: unlocked, every accept saw none held and all twenty stuck.
    Serialised on the worker row, exactly one is accepted and the rest clash."""
    from tests.test_scheduled import one_worker_and_boilers

    set_settings(app, scheduled_service_minutes=60)
    batch_id, plumber, plumber_h = one_worker_and_boilers(
        app, app.test_client(), make, [f"{i}A" for i in range(20)], "tomorrow 09:00-09:30")
    offers = sql(app, "SELECT o.id FROM offers o JOIN jobs j ON j.id = o.job_id "
                      "WHERE j.batch_id = :b AND o.worker_id = :w AND o.status = 'pending'",
                 b=batch_id, w=plumber)
    assert len(offers) == 20

    def accept(offer_id: int) -> tuple[int, str | None]:
        answer = app.test_client().post(f"/api/v1/offers/{offer_id}/accept", headers=plumber_h)
        return answer.status_code, (answer.json.get("error") or {}).get("code")

    results = race([lambda o=o: accept(o.id) for o in offers])
    assert Counter(results) == {(200, None): 1, (409, "window_clash"): 19}, results
    held = sql(app, "SELECT id FROM jobs WHERE worker_id = :w AND status = 'assigned'",
               w=plumber)
    assert len(held) == 1
    assert sql(app, "SELECT count(*) AS n FROM offers WHERE status = 'accepted'")[0].n == 1
