"""Who may see and do what: residents their jobs, workers their offers and assignments."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import Factory, book, job_body, set_settings, sql


def test_residents_see_only_their_own_jobs(app: Flask, client: FlaskClient,
                                           make: Factory) -> None:
    make.worker()
    _, alice = make.user(Role.RESIDENT)
    _, bob = make.user(Role.RESIDENT)
    job_id = book(client, alice, job_body(make.category("leak-repair"))).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=alice).status_code == 200
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/events"):
        r = client.get(path, headers=bob)
        assert r.status_code == 404, path
    assert client.get("/api/v1/jobs", headers=bob).json["jobs"] == []
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=alice).json["jobs"]] == [job_id]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=bob)
    assert r.status_code == 404
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=job_id)[0].status == "dispatching"


def test_workers_see_only_their_offers_and_assignments(app: Flask, client: FlaskClient,
                                                       make: Factory, settings) -> None:
    set_settings(app, offer_wave_size=1)
    _, offered = make.worker()
    _, bystander = make.worker(skills=("dog-walking",))
    _, resident = make.user(Role.RESIDENT)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    [offer_id] = [o.id for o in sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)]
    assert [o["id"] for o in client.get("/api/v1/offers", headers=offered).json["offers"]] == [
        offer_id]
    assert client.get("/api/v1/offers", headers=bystander).json["offers"] == []
    # An offer is not an assignment: the job itself is visible once accepted.
    assert client.get(f"/api/v1/jobs/{job_id}", headers=offered).status_code == 404
    for action in ("accept", "decline"):
        r = client.post(f"/api/v1/offers/{offer_id}/{action}", headers=bystander)
        assert r.status_code == 404
    assert client.post(f"/api/v1/jobs/{job_id}/status", json={"status": "en_route"},
                       headers=bystander).status_code == 404
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=offered).status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}", headers=offered).status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}", headers=bystander).status_code == 404


def test_roles_are_enforced(app: Flask, client: FlaskClient, make: Factory) -> None:
    leak = make.category("leak-repair")
    worker_id, worker = make.worker()
    _, resident = make.user(Role.RESIDENT)
    _, manager = make.user(Role.PROPERTY_MANAGER)
    r = book(client, worker, job_body(leak))
    assert r.status_code == 403 and r.json["error"]["fields"][0]["field"] == "role"
    assert client.get("/api/v1/offers", headers=resident).status_code == 403
    assert client.get("/api/v1/worker/profile", headers=resident).status_code == 403
    verify = {"category_id": leak, "verified": False}
    assert client.post(f"/api/v1/admin/workers/{worker_id}/verification", json=verify,
                       headers=worker).status_code == 403
    assert client.get("/api/v1/jobs", headers=manager).json["jobs"] == []


def test_admin_sees_every_job(app: Flask, client: FlaskClient, make: Factory) -> None:
    make.worker()
    _, resident = make.user(Role.RESIDENT)
    _, admin = make.user(Role.ADMIN)
    job_id = book(client, resident, job_body(make.category("leak-repair"))).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin).status_code == 200


def test_missing_or_bad_token_is_401(client: FlaskClient, make: Factory) -> None:
    assert client.get("/api/v1/me").status_code == 401
    for header in ("Bearer nope", "Basic abc", "Bearer "):
        r = client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401
        assert r.json["error"]["fields"][0]["field"] == "Authorization"


def test_revoked_token_stops_working(client: FlaskClient, make: Factory) -> None:
    _, headers = make.user(Role.RESIDENT)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/token", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
