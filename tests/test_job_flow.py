"""A job from accept to completion, cancellation, and the state machine's refusals."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.domain.states import (
    JOB_TRANSITIONS,
    Actor,
    IllegalTransition,
    JobStatus,
    check_job_transition,
)
from tests.helpers import Factory, book, job_body, set_settings, sql


def assigned_job(app: Flask, client: FlaskClient, make: Factory):
    set_settings(app, offer_wave_size=2)
    worker_id, worker = make.worker()
    other_id, other = make.worker()
    resident_id, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j AND worker_id = :w",
                   j=job_id, w=worker_id)[0].id
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=worker).status_code == 200
    return job_id, (worker_id, worker), (resident_id, resident), (other_id, other)


def post_status(client: FlaskClient, job_id: int, headers: dict[str, str], status: str):
    return client.post(f"/api/v1/jobs/{job_id}/status", json={"status": status}, headers=headers)


def test_worker_moves_the_job_to_completed_and_is_free_again(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    job_id, (worker_id, worker), (_, resident), _ = assigned_job(app, client, make)
    for status in ["en_route", "arrived", "in_progress", "completed"]:
        r = post_status(client, job_id, worker, status)
        assert r.status_code == 200, r.json
        assert r.json["status"] == status
    seen = client.get(f"/api/v1/jobs/{job_id}", headers=resident).json
    assert seen["arrived_at"] and seen["completed_at"]
    assert sql(app, "SELECT availability FROM workers WHERE user_id = :w",
               w=worker_id)[0].availability == "online"
    events = client.get(f"/api/v1/jobs/{job_id}/events", headers=resident).json["events"]
    moves = [(e["actor"], e["from_status"], e["to_status"]) for e in events
             if e["kind"] == "status"]
    assert moves == [
        ("system", "requested", "dispatching"),
        ("system", "dispatching", "assigned"),
        ("worker", "assigned", "en_route"),
        ("worker", "en_route", "arrived"),
        ("worker", "arrived", "in_progress"),
        ("worker", "in_progress", "completed"),
    ]
    assert all(e["at"] for e in events)


def test_illegal_moves_are_refused_and_change_nothing(
    app: Flask, client: FlaskClient, make: Factory, settings
) -> None:
    job_id, (_, worker), _, _ = assigned_job(app, client, make)
    r = post_status(client, job_id, worker, "completed")
    assert r.status_code == 409
    assert r.json["error"]["current_status"] == "assigned"
    assert r.json["error"]["fields"][0]["field"] == "status"
    bad = post_status(client, job_id, worker, "closed")
    assert bad.status_code == 422 and bad.json["error"]["fields"][0]["field"] == "status"
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "assigned"
    assert post_status(client, job_id, worker, "en_route").status_code == 200
    assert post_status(client, job_id, worker, "en_route").status_code == 409


def test_resident_cancel_releases_worker(app: Flask, client: FlaskClient, make: Factory,
                                         settings) -> None:
    job_id, (worker_id, worker), (_, resident), _ = assigned_job(app, client, make)
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={"reason": "fixed it myself"},
                    headers=resident)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    assert sql(app, "SELECT availability FROM workers WHERE user_id = :w",
               w=worker_id)[0].availability == "online"
    last = sql(app, "SELECT actor, detail FROM job_events WHERE job_id = :j AND kind = 'status' "
                    "ORDER BY id DESC LIMIT 1", j=job_id)[0]
    assert last.actor == "resident" and last.detail == {"reason": "fixed it myself"}
    assert post_status(client, job_id, worker, "en_route").status_code == 409
    again = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    assert again.status_code == 409


def test_cancel_while_dispatching_withdraws_offers(app: Flask, client: FlaskClient,
                                                   make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident)
    assert r.status_code == 200
    assert {o.status for o in sql(app, "SELECT status FROM offers WHERE job_id = :j",
                                  j=job_id)} == {"withdrawn"}


def test_busy_worker_cannot_go_offline(app: Flask, client: FlaskClient, make: Factory,
                                       settings) -> None:
    _, (_, worker), _, _ = assigned_job(app, client, make)
    r = client.post("/api/v1/worker/availability", json={"availability": "offline"},
                    headers=worker)
    assert r.status_code == 409 and r.json["error"]["fields"][0]["field"] == "availability"


def test_job_events_are_append_only(app: Flask, client: FlaskClient, make: Factory,
                                    settings) -> None:
    job_id, *_ = assigned_job(app, client, make)
    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE job_events SET kind = 'x' WHERE job_id = :j"),
                               {"j": job_id})
        db.session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM job_events WHERE job_id = :j"), {"j": job_id})
        db.session.rollback()


def test_state_machine_map_is_closed() -> None:
    """Every edge names real statuses; final states lead nowhere a worker can take them."""
    for (src, dst), actors in JOB_TRANSITIONS.items():
        assert src != dst and actors
    with pytest.raises(IllegalTransition):
        check_job_transition(JobStatus.CANCELLED, JobStatus.DISPATCHING, Actor.SYSTEM)
    with pytest.raises(IllegalTransition):
        check_job_transition(JobStatus.ASSIGNED, JobStatus.EN_ROUTE, Actor.RESIDENT)
    check_job_transition(JobStatus.ASSIGNED, JobStatus.EN_ROUTE, Actor.WORKER)
