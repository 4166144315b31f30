"""The cascade keeps its promise of width and never forgets a job: a decline is replaced at
once (also when declines race), and a batch's urgent job that found nobody is offered to the
organization's preferred contractor who comes online later."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from flask.testing import FlaskClient

from dispatch.db import db
from dispatch.entrypoints.sweeper import sweep_once
from tests.helpers import CENTER, Factory, ManualClock, offset, sql
from tests.test_batches import add_unit, run_queue
from tests.test_offers import setup_job
from tests.test_portfolio import manager_with_property
from tests.test_races import race


def pending(app: Flask, job_id: int) -> list:
    return sql(app, "SELECT id, worker_id FROM offers WHERE job_id = :j AND status = 'pending' "
                    "ORDER BY id", j=job_id)


def crew_and_job(app: Flask, client: FlaskClient, make: Factory,
                 workers: int) -> tuple[int, dict[int, dict[str, str]]]:
    job_id, crew = setup_job(app, client, make, workers=workers, wave=3)
    return job_id, dict(crew)


def test_one_decline_out_of_three_is_replaced_at_once(app: Flask, client: FlaskClient,
                                                      make: Factory, settings) -> None:
    job_id, crew = crew_and_job(app, client, make, workers=4)
    first_wave = pending(app, job_id)
    assert len(first_wave) == 3
    decliner = first_wave[0]
    r = client.post(f"/api/v1/offers/{decliner.id}/decline", headers=crew[decliner.worker_id])
    assert r.status_code == 200, r.json
    now_pending = pending(app, job_id)
    assert len(now_pending) == 3  # the wave keeps its width, without waiting 30 s
    [newcomer] = set(crew) - {o.worker_id for o in first_wave}
    assert newcomer in {o.worker_id for o in now_pending}


def test_racing_declines_each_get_a_replacement_and_nobody_is_asked_twice(
    app: Flask, make: Factory, settings
) -> None:
    job_id, crew = crew_and_job(app, app.test_client(), make, workers=6)
    first_wave = pending(app, job_id)

    def decline(offer_id: int, worker_id: int):  # type: ignore[no-untyped-def]
        return lambda: app.test_client().post(f"/api/v1/offers/{offer_id}/decline",
                                              headers=crew[worker_id]).status_code

    codes = race([decline(o.id, o.worker_id) for o in first_wave[:2]])
    assert codes == [200, 200]
    assert len(pending(app, job_id)) == 3
    asked = Counter(r.worker_id for r in sql(app, "SELECT worker_id FROM offers "
                                                  "WHERE job_id = :j", j=job_id))
    assert len(asked) == 5 and set(asked.values()) == {1}


def test_a_batch_job_goes_back_to_its_preferred_contractor_when_they_come_online_again(
    app: Flask, client: FlaskClient, make: Factory, manual_clock: ManualClock, settings
) -> None:
    """The batch planned its urgent job onto the preferred contractor, whose phone slept
    through the offer; they went offline. Twenty minutes later they are online 50 m away:
    the sweeper asks them again (before, a worker once asked was never asked again, and
    the job stayed dispatching until it ran out of patience)."""
    pm, prop_id = manager_with_property(client, make)
    unit = add_unit(client, pm, prop_id, "1A")
    preferred, preferred_h = make.worker(lat=offset(*CENTER, north_m=50)[0],
                                         email="pat@example.test")
    invitation = client.post("/api/v1/org/invitations", json={"contact": "pat@example.test"},
                             headers=pm).json
    assert client.post(f"/api/v1/invitations/{invitation['id']}/accept",
                       headers=preferred_h).status_code == 200
    r = client.post("/api/v1/batches", json={"batch_key": "b", "rows": [
        {"unit_id": unit, "category": "leak-repair", "description": "Leak"}]}, headers=pm)
    assert r.status_code == 202, r.json
    run_queue(app)
    [offer] = sql(app, "SELECT id, job_id, worker_id FROM offers")
    assert offer.worker_id == preferred
    manual_clock.advance(seconds=31)  # unanswered
    with app.app_context():
        sweep_once(db.session)
    assert pending(app, offer.job_id) == []
    assert client.post("/api/v1/worker/availability", json={"availability": "offline"},
                       headers=preferred_h).status_code == 200

    manual_clock.advance(minutes=20)
    assert client.post("/api/v1/worker/availability", json={"availability": "online"},
                       headers=preferred_h).status_code == 200
    here = offset(*CENTER, north_m=50)
    fix = client.post("/api/v1/worker/location", json={
        "lat": here[0], "lng": here[1], "accuracy_m": 10,
        "recorded_at": manual_clock.now.isoformat()}, headers=preferred_h)
    assert fix.status_code == 200 and fix.json["accepted"], fix.json
    with app.app_context():
        sweep_once(db.session)
    [again] = pending(app, offer.job_id)
    assert again.worker_id == preferred and again.id != offer.id
    taken = client.post(f"/api/v1/offers/{again.id}/accept", headers=preferred_h)
    assert taken.status_code == 200, taken.json
    assert taken.json["job"]["status"] == "assigned"
