"""The managers' set-up, through the API: contractors by invitation (the worker decides), the
webhook secret shown once, batch history, the same file sent twice caught by its content, and
a bulk cancel of a batch's open jobs that races safely."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from tests.helpers import Factory, count, sql
from tests.test_batches import add_unit, run_queue
from tests.test_portfolio import manager_with_property
from tests.test_races import race

BATCH_CSV = ("property,unit,category,description,urgency,budget_cap\n"
             "Elm Court,1A,leak-repair,Leak under sink,urgent,\n"
             "Elm Court,1B,lockout,Tenant locked out,urgent,\n"
             "Elm Court,1C,leak-repair,Dripping tap,urgent,\n")


def send_csv(client: FlaskClient, pm: dict[str, str], key: str, text: str = BATCH_CSV,
             query: str = "") -> object:
    return client.post(f"/api/v1/batches?batch_key={key}{query}", data=text.encode(),
                       content_type="text/csv", headers=pm)


def manager_with_units(client: FlaskClient, make: Factory) -> dict[str, str]:
    """A manager of Elm Court with units 1A to 1C (the units BATCH_CSV names)."""
    pm, prop_id = manager_with_property(client, make)
    for label in ("1A", "1B", "1C"):
        add_unit(client, pm, prop_id, label)
    return pm


def test_a_worker_becomes_a_preferred_contractor_only_by_accepting(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, _ = manager_with_property(client, make)
    pat_id, pat = make.worker(email="pat@example.test", name="Pat Plumber", phone="+14155550177")
    _, sam = make.worker(email="sam@example.test", name="Sam Sparks")
    _, outsider = make.worker(email="olly@example.test")
    by_email = client.post("/api/v1/org/invitations", json={"contact": " Pat@Example.test "},
                           headers=pm)
    assert by_email.status_code == 201, by_email.json
    assert by_email.json["contact"] == "pat@example.test"
    assert by_email.json["status"] == "pending" and by_email.json["worker_name"] is None
    again = client.post("/api/v1/org/invitations", json={"contact": "pat@example.test"},
                        headers=pm)
    assert again.json["id"] == by_email.json["id"]  # one open invitation per person
    to_sam = client.post("/api/v1/org/invitations", json={"contact": "sam@example.test"},
                         headers=pm).json
    to_nobody = client.post("/api/v1/org/invitations", json={"contact": "(415) 555-0199"},
                            headers=pm).json
    assert to_nobody["contact"] == "+14155550199"

    # The manager learns nothing about who is behind a contact before an accept: an
    # invitation to a real worker looks exactly like one to nobody.
    listed = client.get("/api/v1/org/invitations", headers=pm).json["invitations"]
    assert {tuple(sorted(i.keys())) for i in listed} == {tuple(sorted(by_email.json.keys()))}
    assert all(i["worker_id"] is None and i["worker_name"] is None for i in listed)
    assert client.get("/api/v1/org/contractors", headers=pm).json["contractors"] == []

    # Each worker sees only what is addressed to them.
    mine = client.get("/api/v1/invitations", headers=pat).json["invitations"]
    assert [(i["id"], i["organization"]) for i in mine] == [(by_email.json["id"], "Bay Homes")]
    assert client.get("/api/v1/invitations", headers=outsider).json["invitations"] == []
    stolen = client.post(f"/api/v1/invitations/{to_sam['id']}/accept", headers=outsider)
    assert stolen.status_code == 404
    assert stolen.json["error"]["fields"][0]["field"] == "invitation_id"
    assert client.get("/api/v1/invitations", headers=pm).status_code == 403

    accepted = client.post(f"/api/v1/invitations/{by_email.json['id']}/accept", headers=pat)
    assert accepted.status_code == 200 and accepted.json["status"] == "accepted"
    twice = client.post(f"/api/v1/invitations/{by_email.json['id']}/decline", headers=pat)
    assert twice.status_code == 409 and "already accepted" in twice.json["error"]["message"]
    declined = client.post(f"/api/v1/invitations/{to_sam['id']}/decline", headers=sam)
    assert declined.json["status"] == "declined"

    contractors = client.get("/api/v1/org/contractors", headers=pm).json["contractors"]
    assert [(c["worker_id"], c["name"]) for c in contractors] == [(pat_id, "Pat Plumber")]
    statuses = {i["contact"]: (i["status"], i["worker_name"]) for i in client.get(
        "/api/v1/org/invitations", headers=pm).json["invitations"]}
    assert statuses == {"pat@example.test": ("accepted", "Pat Plumber"),
                        "sam@example.test": ("declined", None),  # a decline names nobody
                        "+14155550199": ("pending", None)}
    assert client.get("/api/v1/invitations", headers=pat).json["invitations"] == []

    # Withdrawn before anyone answers; an answered one cannot be withdrawn.
    assert client.delete(f"/api/v1/org/invitations/{to_nobody['id']}",
                         headers=pm).status_code == 204
    assert client.delete(f"/api/v1/org/invitations/{by_email.json['id']}",
                         headers=pm).status_code == 409
    # The direct add is gone: a manager cannot make anyone a contractor without consent.
    direct = client.post("/api/v1/org/contractors", json={"worker_id": pat_id}, headers=pm)
    assert direct.status_code == 405
    bad = client.post("/api/v1/org/invitations", json={"contact": "not a thing"}, headers=pm)
    assert bad.status_code == 422
    assert bad.json["error"]["fields"] == [{
        "field": "contact", "kind": "contact.invalid",
        "problem": "Enter an e-mail address or a mobile phone number."}]


def test_a_worker_found_by_phone_can_accept_and_invitations_race_safely(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm, _ = manager_with_property(client, make)
    worker_id, worker = make.worker(phone="+14155550123")
    invitation = client.post("/api/v1/org/invitations", json={"contact": "+1 415 555 0123"},
                             headers=pm).json
    results = race([lambda: app.test_client().post(
        f"/api/v1/invitations/{invitation['id']}/accept", headers=worker).status_code
        for _ in range(6)])
    assert Counter(results) == {200: 1, 409: 5}, results
    assert sql(app, "SELECT worker_id FROM preferred_contractors")[0].worker_id == worker_id


def test_the_webhook_secret_is_shown_once(app: Flask, client: FlaskClient,
                                          make: Factory) -> None:
    pm, _ = manager_with_property(client, make)
    assert client.get("/api/v1/org", headers=pm).json["webhook_secret_set"] is False
    rotate_first = client.post("/api/v1/org/webhook-secret", headers=pm)
    assert rotate_first.status_code == 409
    assert rotate_first.json["error"]["fields"][0]["field"] == "webhook_url"
    made = client.patch("/api/v1/org", json={"webhook_url": "https://pms.example.test/hook"},
                        headers=pm).json
    secret = made["webhook_secret"]
    assert len(secret) == 64 and made["webhook_secret_set"] is True
    assert sql(app, "SELECT webhook_secret FROM organizations")[0].webhook_secret == secret
    for later in (client.get("/api/v1/org", headers=pm).json,
                  client.patch("/api/v1/org", json={"name": "Bay Homes West"}, headers=pm).json,
                  client.patch("/api/v1/org", json={"webhook_url": "https://pms.example.test/2"},
                               headers=pm).json):
        assert later["webhook_secret"] is None and later["webhook_secret_set"] is True
    rotated = client.post("/api/v1/org/webhook-secret", headers=pm).json
    assert len(rotated["webhook_secret"]) == 64 and rotated["webhook_secret"] != secret
    assert sql(app, "SELECT webhook_secret FROM organizations")[0].webhook_secret == \
        rotated["webhook_secret"]
    assert client.get("/api/v1/org", headers=pm).json["webhook_secret"] is None
    off = client.patch("/api/v1/org", json={"webhook_url": ""}, headers=pm).json
    assert off["webhook_secret_set"] is False
    back = client.patch("/api/v1/org", json={"webhook_url": "https://pms.example.test/3"},
                        headers=pm).json
    assert back["webhook_secret"] not in (None, secret, rotated["webhook_secret"])


def test_the_same_file_under_another_key_is_refused_unless_confirmed(
    app: Flask, client: FlaskClient, make: Factory
) -> None:
    pm = manager_with_units(client, make)
    first = send_csv(client, pm, "from-the-page")
    assert first.status_code == 202
    # The same content with other line endings, sent by a script under its own key.
    dup = send_csv(client, pm, "from-curl", BATCH_CSV.replace("\n", "\r\n"))
    assert dup.status_code == 409
    error = dup.json["error"]
    assert error["code"] == "duplicate_batch" and error["duplicate_of"] == first.json["id"]
    assert error["message"] == f"this file was already sent as batch {first.json['id']}"
    assert error["fields"][0]["field"] == "file"
    assert count(app, "batches") == 1
    json_dup = client.post("/api/v1/batches", json={"batch_key": "j", "rows": [
        {"unit_id": 1, "category": "leak-repair", "description": "Leak"}]}, headers=pm)
    assert json_dup.status_code == 202
    json_again = client.post("/api/v1/batches", json={"batch_key": "j2", "rows": [
        {"unit_id": 1, "category": "leak-repair", "description": "Leak"}]}, headers=pm)
    assert json_again.status_code == 409
    assert json_again.json["error"]["fields"][0]["field"] == "rows"
    bad_flag = send_csv(client, pm, "from-curl", query="&confirm_duplicate=yes")
    assert bad_flag.status_code == 422
    assert bad_flag.json["error"]["fields"][0]["field"] == "confirm_duplicate"
    confirmed = send_csv(client, pm, "from-curl", query="&confirm_duplicate=true")
    assert confirmed.status_code == 202 and confirmed.json["id"] != first.json["id"]
    # Racing copies under different keys: exactly one gets through.
    text = BATCH_CSV.replace("Dripping tap", "Dripping tap again")
    codes = race([lambda k=k: send_csv(app.test_client(), pm, f"race-{k}", text).status_code
                  for k in range(6)])
    assert Counter(codes) == {202: 1, 409: 5}, codes


def test_history_and_bulk_cancel_of_a_batchs_open_jobs(app: Flask, client: FlaskClient,
                                                      make: Factory) -> None:
    pm = manager_with_units(client, make)
    _, worker = make.worker(skills=("lockout",))
    batch = send_csv(client, pm, "monday",
                     BATCH_CSV + "Elm Court,9Z,leak-repair,No such unit,urgent,\n").json
    early = client.post(f"/api/v1/batches/{batch['id']}/cancel", json={}, headers=pm)
    assert early.status_code == 409 and early.json["error"]["fields"][0]["field"] == "batch"
    run_queue(app)
    [offer] = sql(app, "SELECT id FROM offers WHERE status = 'pending'")
    assert client.post(f"/api/v1/offers/{offer.id}/accept", headers=worker).status_code == 200
    # A job a worker has taken is not called off in bulk (the manager may, on its page).
    taken = sql(app, "SELECT id FROM jobs WHERE worker_id IS NOT NULL")[0].id

    [summary] = client.get("/api/v1/batches", headers=pm).json["batches"]
    assert (summary["id"], summary["status"], summary["total_rows"], summary["accepted_rows"],
            summary["rejected_rows"]) == (batch["id"], "done", 4, 3, 1)
    assert sum(summary["jobs_by_status"].values()) == 3 and summary["open_jobs"] == 2

    results = race([lambda: app.test_client().post(
        f"/api/v1/batches/{batch['id']}/cancel", json={"reason": "sent by mistake"},
        headers=pm) for _ in range(4)])
    assert all(r.status_code == 200 for r in results), [r.json for r in results]
    cancelled = sorted(j for r in results for j in r.json["cancelled"])
    assert len(cancelled) == 2 and len(set(cancelled)) == 2  # each job once, by one request
    assert {r.json["kept"] for r in results} == {1}
    events = sql(app, "SELECT job_id, actor, detail FROM job_events WHERE to_status = "
                      "'cancelled' ORDER BY job_id")
    assert [e.job_id for e in events] == cancelled
    assert all(e.actor == "resident" and e.detail["batch_id"] == batch["id"] for e in events)
    assert sql(app, "SELECT count(*) AS n FROM offers WHERE status = 'pending'")[0].n == 0
    assert sql(app, "SELECT status FROM jobs WHERE id = :j", j=taken)[0].status == "assigned"
    after = client.get("/api/v1/batches", headers=pm).json["batches"][0]
    assert after["open_jobs"] == 0 and after["jobs_by_status"]["cancelled"] == 2
    _, stranger = make.user(Role.PROPERTY_MANAGER)
    client.post("/api/v1/org", json={"name": "Other Homes"}, headers=stranger)
    assert client.post(f"/api/v1/batches/{batch['id']}/cancel", json={},
                       headers=stranger).status_code == 404
    assert client.get("/api/v1/batches", headers=stranger).json["batches"] == []
    assert client.post("/api/v1/batches/1/cancel", json={},
                       headers=make.user(Role.WORKER)[1]).status_code == 403
