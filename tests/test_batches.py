"""Batch repair requests: rows checked one by one, idempotent by batch key, processed by a
real RQ worker, and assigned together (not each grabbing the nearest worker)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker

from dispatch.db.models import Role
from dispatch.entrypoints.tasks import process_batch_task
from dispatch.infra.queues import ALL_QUEUES
from tests.helpers import CENTER, Factory, ManualClock, count, offset, sql
from tests.prism import VerifyingHttpClient
from tests.test_portfolio import manager_with_property


def run_queue(app: Flask) -> None:
    conn = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        SimpleWorker([Queue(name, connection=conn) for name in ALL_QUEUES],
                     connection=conn).work(burst=True)


def add_unit(client: FlaskClient, pm: dict[str, str], prop_id: int, label: str,
             north_m: float = 0, east_m: float = 0) -> int:
    lat, lng = offset(*CENTER, north_m=north_m, east_m=east_m)
    r = client.post("/api/v1/units", json={"property_id": prop_id, "label": label,
                                           "address": f"Elm Court {label}", "lat": lat,
                                           "lng": lng}, headers=pm)
    assert r.status_code == 201, r.json
    return r.json["id"]


def test_csv_batch_keeps_good_rows_names_bad_ones_and_is_idempotent(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, prop_id = manager_with_property(client, make)
    for label in ("1A", "1B", "1C"):
        add_unit(client, pm, prop_id, label)
    for _ in range(3):
        make.worker()
    csv = ("property,unit,category,description,urgency,budget_cap\n"
           "Elm Court,1A,leak-repair,Leak under sink,urgent,250\n"
           "Elm Court,9Z,leak-repair,No such unit,urgent,\n"
           "Elm Court,1B,plumbing,A group not a service,urgent,\n"
           "Elm Court,1B,lockout,Tenant locked out,tomorrow 12:00-09:00,\n"
           "Elm Court,1C,leak-repair,Dripping tap,,-5\n"
           "Elm Court,1C,leak-repair,Dripping tap,,\n")
    post = client.post("/api/v1/batches?batch_key=monday-1", data=csv.encode(),
                       content_type="text/csv", headers=pm)
    assert post.status_code == 202, post.json
    batch = post.json
    assert batch["accepted_rows"] == 2 and batch["total_rows"] == 6
    assert [(r["line"], r["field"]) for r in batch["rejected"]] == [
        (3, "unit"), (4, "category"), (5, "urgency"), (6, "budget_cap")]
    assert batch["rejected"][0]["problem"] == "There is no unit '9Z' in the property 'Elm Court'."
    for refused in batch["rejected"]:  # sentences for the manager, not codes
        assert refused["problem"][0].isupper() and refused["problem"].endswith("."), refused
        assert "_" not in refused["problem"], refused
    run_queue(app)
    done = client.get(f"/api/v1/batches/{batch['id']}", headers=pm).json
    assert done["status"] == "done" and done["processed_rows"] == 2
    assert {j["status"] for j in done["jobs"]} == {"dispatching"} and len(done["jobs"]) == 2
    again = client.post("/api/v1/batches?batch_key=monday-1", data=csv.encode(),
                        content_type="text/csv", headers=pm)
    assert again.status_code == 200 and again.json["id"] == batch["id"]
    other_rows = client.post("/api/v1/batches?batch_key=monday-1",
                             data=csv.replace("Dripping tap,,\n", "Drip,,\n").encode(),
                             content_type="text/csv", headers=pm)
    assert other_rows.status_code == 422
    assert other_rows.json["error"]["fields"][0]["field"] == "batch_key"
    with app.app_context():
        assert process_batch_task(batch["id"]) == 0  # running twice opens nothing more
    assert count(app, "jobs") == 2 and count(app, "batches") == 1
    assert sql(app, "SELECT budget_cap_cents FROM jobs ORDER BY id")[0].budget_cap_cents == 25000


def test_batch_is_assigned_jointly_not_nearest_first(app: Flask, client: FlaskClient,
                                                     make: Factory, settings: Any) -> None:
    """Job A is next to both workers; job B only within reach of the one nearest A.
    Nearest-first would give A that worker and leave B without anyone in its radius."""
    pm, prop_id = manager_with_property(client, make)
    unit_a = add_unit(client, pm, prop_id, "A")
    unit_b = add_unit(client, pm, prop_id, "B", east_m=-7000)  # in the Sunset, on land
    near_both, _ = make.worker(lat=offset(*CENTER, east_m=500)[0],
                               lng=offset(*CENTER, east_m=500)[1], radius_m=12000)
    only_a, only_a_headers = make.worker(lat=offset(*CENTER, east_m=-1000)[0],
                                         lng=offset(*CENTER, east_m=-1000)[1], radius_m=3000)
    rows = [{"unit_id": unit_a, "category": "leak-repair", "description": "Leak A"},
            {"unit_id": unit_b, "category": "leak-repair", "description": "Leak B"}]
    batch = client.post("/api/v1/batches", json={"batch_key": "k", "rows": rows},
                        headers=pm).json
    run_queue(app)
    offers = {r.unit_id: r.worker_id for r in sql(
        app, "SELECT j.unit_id, o.worker_id FROM offers o JOIN jobs j ON j.id = o.job_id "
             "WHERE j.batch_id = :b", b=batch["id"])}
    assert offers == {unit_a: only_a, unit_b: near_both}
    # One planned worker each is a chance, not yet a promise: the accept makes it one.
    promised = {r.unit_id: r.promised for r in sql(
        app, "SELECT unit_id, promised FROM jobs WHERE batch_id = :b", b=batch["id"])}
    assert promised == {unit_a: False, unit_b: False}
    offer_a = sql(app, "SELECT o.id FROM offers o JOIN jobs j ON j.id = o.job_id "
                       "WHERE j.unit_id = :u", u=unit_a)[0].id
    assert client.post(f"/api/v1/offers/{offer_a}/accept",
                       headers=only_a_headers).status_code == 200
    assert sql(app, "SELECT promised FROM jobs WHERE unit_id = :u", u=unit_a)[0].promised


def test_batch_rows_are_checked_in_json_too(app: Flask, client: FlaskClient,
                                            make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "ok row"},
            {"unit_id": 999999, "category": "leak-repair", "description": "bad unit"},
            {"unit_id": unit, "category": "leak-repair", "description": ""},
            "not an object"]
    r = client.post("/api/v1/batches", json={"batch_key": "j1", "rows": rows}, headers=pm)
    assert r.status_code == 202
    assert [(p["line"], p["field"]) for p in r.json["rejected"]] == [
        (2, "unit_id"), (3, "description"), (4, "row")]
    no_key = client.post("/api/v1/batches", json={"rows": rows}, headers=pm)
    assert no_key.status_code == 422 and no_key.json["error"]["fields"][0]["field"] == (
        "batch_key")
    _, other_pm = make.user(Role.PROPERTY_MANAGER)
    assert client.get(f"/api/v1/batches/{r.json['id']}", headers=other_pm).status_code == 409


def test_odd_rows_are_refused_by_name_never_a_500(app: Flask, client: FlaskClient,
                                                  make: Factory) -> None:
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "x" * 5,
             "budget_cap": "inf"},
            {"unit_id": 1e309, "category": "leak-repair", "description": "cap"},
            {"unit_id": unit, "category": "²", "description": "superscript two"},
            {"unit_id": unit, "category": "leak\x00repair", "description": "nul"},
            {"unit_id": unit, "category": "leak-repair", "description": "bad \ud800 text"}]
    r = client.post("/api/v1/batches", json={"batch_key": "odd", "rows": rows}, headers=pm)
    assert r.status_code == 202, r.json
    assert [p["field"] for p in r.json["rejected"]] == [
        "budget_cap", "unit_id", "category", "category", "description"]
    huge = "property,unit,category,description\nElm Court,1A,leak-repair," + "x" * 200_000
    big = client.post("/api/v1/batches?batch_key=big", data=huge.encode(),
                      content_type="text/csv", headers=pm)
    assert big.status_code == 400 and big.json["error"]["fields"][0]["field"] == "file"
    bad_month = client.get("/api/v1/reports/sla?month=0000-01", headers=pm)
    assert bad_month.status_code == 400


def test_the_sweeper_leaves_a_batch_in_progress_to_its_joint_assignment(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    from dispatch.db import db
    from dispatch.services import batches
    from dispatch.services.dispatching import sweep

    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    make.worker()
    rows = [{"unit_id": unit, "category": "leak-repair", "description": "Leak"}]
    batch_id = client.post("/api/v1/batches", json={"batch_key": "s", "rows": rows},
                           headers=pm).json["id"]
    with app.app_context():
        batch = db.session.get(batches.Batch, batch_id)
        batches._open_job(db.session, batch, batch.rows[0], 120)  # opened, not yet assigned
        db.session.commit()
        assert sweep(db.session) == 0  # not the cascade's: the batch will assign it
    assert count(app, "offers") == 0
    with app.app_context():
        assert batches.process(db.session, batch_id) == 1
    assert count(app, "offers") == 1


def test_refused_rows_name_their_real_line_after_a_multiline_field(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, prop_id = manager_with_property(client, make)
    add_unit(client, pm, prop_id, "1A")
    csv = ("property,unit,category,description\n"
           'Elm Court,1A,leak-repair,"Leak under the sink.\nTenant home after 5.\nDog."\n'
           "\n"
           "Elm Court,9Z,leak-repair,No such unit\n")
    r = client.post("/api/v1/batches?batch_key=multi", data=csv.encode(),
                    content_type="text/csv", headers=pm)
    assert r.status_code == 202, r.json
    assert [(p["line"], p["field"]) for p in r.json["rejected"]] == [(6, "unit")]


def test_the_tenant_is_texted_who_is_coming_and_when(app: Flask, client: FlaskClient,
                                                    make: Factory) -> None:
    """A batch job's requester is the manager; the unit's tenant, who is not a user, gets
    the texts that matter to them at the door (not the offers, not an unfilled job)."""
    pm, prop_id = manager_with_property(client, make)
    unit = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "4B", "address": "1 Elm St 4B", "lat": CENTER[0],
        "lng": CENTER[1], "tenant_name": "Ann", "tenant_phone": "+14155550177"}, headers=pm)
    assert unit.status_code == 201, unit.json
    _, worker_h = make.worker()
    r = client.post("/api/v1/batches", json={"batch_key": "t", "rows": [
        {"unit_id": unit.json["id"], "category": "leak-repair", "description": "Leak"}]},
        headers=pm)
    run_queue(app)
    offer = sql(app, "SELECT o.id, o.job_id FROM offers o JOIN jobs j ON j.id = o.job_id "
                     "WHERE j.batch_id = :b", b=r.json["id"])[0]
    assert client.post(f"/api/v1/offers/{offer.id}/accept", headers=worker_h).status_code == 200
    assert client.post(f"/api/v1/jobs/{offer.job_id}/status", json={"status": "en_route"},
                       headers=worker_h).status_code == 200
    texts = sql(app, "SELECT event, body FROM notifications WHERE to_number = '+14155550177' "
                     "AND user_id IS NULL ORDER BY id")
    assert [t.event for t in texts] == ["tenant_intro", "accepted", "en_route"]
    assert "Leak repair" in texts[1].body
    run_queue(app)  # the sender takes them like any other text (Twilio is unreachable here)
    assert {s.status for s in sql(app, "SELECT status FROM notifications WHERE user_id IS NULL")
            } == {"retrying"}  # attempted, and due again: nothing lost for want of a user


def test_an_urgent_row_is_promised_from_when_the_batch_was_sent_not_processed(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock
) -> None:
    """A batch that waits in the queue (a long batch ahead of it, Redis away) must not move
    the promise: the tenant was told help comes within two hours of the manager's send."""
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    sent_at = manual_clock.now
    r = client.post("/api/v1/batches", json={"batch_key": "late", "rows": [
        {"unit_id": unit, "category": "leak-repair", "description": "Leak under the sink"},
        {"unit_id": unit, "category": "lockout", "description": "Locked out",
         "urgency": "tomorrow 09:00-12:00"}]}, headers=pm)
    assert r.status_code == 202, r.json
    manual_clock.advance(minutes=45)  # the queue was slow
    run_queue(app)
    [urgent] = sql(app, "SELECT arrive_by FROM jobs WHERE urgency = 'urgent'")
    assert urgent.arrive_by == sent_at + timedelta(hours=2)
    [booked] = sql(app, "SELECT window_end, arrive_by FROM jobs WHERE urgency = 'scheduled'")
    assert booked.arrive_by == booked.window_end  # a window keeps its own end


def _tenant_job_accepted(app: Flask, client: FlaskClient, pm: dict[str, str],
                         worker_h: dict[str, str], unit_id: int, key: str) -> None:
    r = client.post("/api/v1/batches", json={"batch_key": key, "rows": [
        {"unit_id": unit_id, "category": "leak-repair", "description": f"Leak, {key}"}]},
        headers=pm)
    assert r.status_code == 202, r.json
    run_queue(app)
    offer = sql(app, "SELECT o.id FROM offers o JOIN jobs j ON j.id = o.job_id "
                     "WHERE j.batch_id = :b", b=r.json["id"])[0]
    assert client.post(f"/api/v1/offers/{offer.id}/accept", headers=worker_h).status_code == 200
    job_id = sql(app, "SELECT id FROM jobs WHERE batch_id = :b", b=r.json["id"])[0].id
    for status in ("en_route", "arrived", "in_progress", "completed"):
        assert client.post(f"/api/v1/jobs/{job_id}/status", json={"status": status},
                           headers=worker_h).status_code == 200
    run_queue(app)


def test_a_tenant_first_hears_who_texts_them_and_how_to_stop(
        app: Flask, client: FlaskClient, make: Factory,
        verify_http: VerifyingHttpClient) -> None:
    """A manager typed the tenant's number: the first text to it, before any other, names
    the organization and says how to stop; later jobs do not repeat it."""
    pm, prop_id = manager_with_property(client, make)
    unit = client.post("/api/v1/units", json={
        "property_id": prop_id, "label": "4B", "address": "1 Elm St 4B", "lat": CENTER[0],
        "lng": CENTER[1], "tenant_name": "Ann", "tenant_phone": "+14155550177"}, headers=pm)
    _, worker_h = make.worker()
    _tenant_job_accepted(app, client, pm, worker_h, unit.json["id"], "first")
    _tenant_job_accepted(app, client, pm, worker_h, unit.json["id"], "second")
    to_tenant = [r.data["Body"] for r in verify_http.requests
                 if r.url.endswith("/Messages.json") and r.data["To"] == "+14155550177"]
    assert len(to_tenant) == 9, to_tenant  # the notice, then 4 texts per job
    first = to_tenant[0]
    assert "Bay Homes" in first and "Elm Court 4B" in first and "STOP" in first
    assert not any("STOP" in body for body in to_tenant[1:])
    assert sql(app, "SELECT count(*) AS n FROM notifications WHERE status != 'sent'")[0].n == 0
