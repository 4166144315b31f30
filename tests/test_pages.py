"""Page access: login required, roles, strangers, and the vendored front-end files."""

from __future__ import annotations

from flask import Flask

from dispatch.db.models import Role
from tests.helpers import Factory, book, job_body, page_login


def login_as(app: Flask, make: Factory, role: Role) -> tuple[int, object, dict[str, str]]:
    """A client holding a login session (as after the login page), plus API headers."""
    user_id, headers = make.user(role, email=f"{role.value}-{id(make)}@example.test")
    client = app.test_client()
    page_login(app, client, user_id)
    return user_id, client, headers


def test_pages_need_login_and_the_right_role(app: Flask, make: Factory) -> None:
    anonymous = app.test_client()
    for path in ("/book", "/work", "/manage", "/jobs/1"):
        r = anonymous.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    _, worker, _ = login_as(app, make, Role.WORKER)
    assert worker.get("/work").status_code == 200
    assert worker.get("/book").status_code == 403
    _, resident, _ = login_as(app, make, Role.RESIDENT)
    assert resident.get("/book").status_code == 200
    assert resident.get("/work").status_code == 403
    assert resident.get("/", follow_redirects=True).request.path == "/book"


def test_a_stranger_gets_404_for_someone_elses_job_page(app: Flask, make: Factory) -> None:
    make.worker()
    _, owner_client, owner_headers = login_as(app, make, Role.RESIDENT)
    job = book(app.test_client(), owner_headers, job_body(make.category("leak-repair"))).json
    assert owner_client.get(f"/jobs/{job['id']}").status_code == 200
    _, stranger, _ = login_as(app, make, Role.PROPERTY_MANAGER)
    assert stranger.get(f"/jobs/{job['id']}").status_code == 404


def test_front_end_libraries_are_served_from_npm(app: Flask) -> None:
    client = app.test_client()
    leaflet = client.get("/vendor/leaflet/leaflet.js")
    assert leaflet.status_code == 200 and b"Leaflet" in leaflet.data[:2000]
    assert client.get("/vendor/socket.io-client/socket.io.min.js").status_code == 200
    assert client.get("/vendor/left-pad/index.js").status_code == 404
    assert client.get("/vendor/leaflet/../../package.json").status_code == 404


def test_job_page_hides_the_address_from_the_worker_once_the_job_ended(
    app: Flask, make: Factory, settings
) -> None:
    from tests.helpers import set_settings, sql

    set_settings(app, offer_wave_size=1)
    worker_id, worker_api = make.worker()
    _, resident_page, resident_api = login_as(app, make, Role.RESIDENT)
    body = job_body(make.category("leak-repair"), address="221B Secret Street")
    job_id = book(app.test_client(), resident_api, body).json["id"]
    offer_id = sql(app, "SELECT id FROM offers WHERE job_id = :j", j=job_id)[0].id
    app.test_client().post(f"/api/v1/offers/{offer_id}/accept", headers=worker_api)
    worker_page = app.test_client()
    page_login(app, worker_page, worker_id)
    assert "221B Secret Street" in worker_page.get(f"/jobs/{job_id}").text
    app.test_client().post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=resident_api)
    after = worker_page.get(f"/jobs/{job_id}").text
    assert "221B Secret Street" not in after and 'data-lat="37.775"' in after
    assert "221B Secret Street" in resident_page.get(f"/jobs/{job_id}").text
