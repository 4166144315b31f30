"""Error pages with the site's layout: a plain sentence and a way back, for every error a page
route can meet; the API keeps answering JSON."""

from __future__ import annotations

import pytest
from flask import Flask, abort

from dispatch.db.models import Role
from dispatch.domain.errors import Conflict, InvalidInput
from dispatch.domain.messages import PAGE_ERRORS
from tests.helpers import Factory
from tests.test_pages import login_as

# The framework's bare pages and what a developer reads: none may reach a person.
BARE = ("Not Found", "Forbidden", "Method Not Allowed", "Internal Server Error",
        "Bad Request", "Traceback", "RuntimeError", "CSRF", "/api/")


def assert_error_page(html: str, heading: str) -> None:
    assert '<header>' in html and 'class="brand"' in html, "no site layout"
    assert f"<h1>{heading}</h1>" in html
    assert 'id="error-back"' in html, "no way back"
    for word in BARE:
        assert word not in html.split("<main>", 1)[1], word


def test_an_unknown_page_is_a_page_with_a_way_home(app: Flask) -> None:
    r = app.test_client().get("/no-such-page")
    assert r.status_code == 404 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert_error_page(html, "Page not found")
    assert "There is no page at this address" in html
    assert "Go to the home page" in html
    api = app.test_client().get("/api/v1/no-such-thing")  # the API keeps answering JSON
    assert api.status_code == 404 and api.is_json and api.json["error"]["code"] == "not_found"


def test_a_page_for_another_role_says_whom_it_is_for(app: Flask, make: Factory) -> None:
    _, worker, _ = login_as(app, make, Role.WORKER)
    r = worker.get("/book")
    assert r.status_code == 403
    html = r.get_data(as_text=True)
    assert_error_page(html, "Not for this account")
    assert ("This page is for residents or property managers. "
            "You are logged in as a worker.") in html
    assert 'href="/work"' in html and "Back to your shift" in html
    _, resident, _ = login_as(app, make, Role.RESIDENT)
    html = resident.get("/work").get_data(as_text=True)
    assert "This page is for workers. You are logged in as a resident." in html
    assert 'href="/book"' in html


def test_a_form_posted_without_its_token_gets_a_page(app: Flask) -> None:
    r = app.test_client().post("/login", data={"email": "a@b.example", "password": "x" * 12})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert_error_page(html, "That did not work")
    assert "reload the page and try again" in html


def test_a_wrong_method_gets_a_page(app: Flask) -> None:
    r = app.test_client().delete("/login")
    assert r.status_code == 405 and "Allow" in r.headers
    assert_error_page(r.get_data(as_text=True), "That did not work")


def _raise(error: Exception | int):  # type: ignore[no-untyped-def]
    def view():  # type: ignore[no-untyped-def]
        if isinstance(error, int):
            abort(error)
        raise error
    return view


@pytest.mark.parametrize("error", [400, 403, 404, 405, 409, 422, 429, 500,
                                   Conflict("taken", "Someone else took it first."),
                                   InvalidInput("bad", "Some details were wrong."),
                                   RuntimeError("db exploded at line 3")])
def test_every_error_a_page_meets_is_a_page(app: Flask, monkeypatch: pytest.MonkeyPatch,
                                            error: Exception | int) -> None:
    monkeypatch.setitem(app.view_functions, "web.index", _raise(error))
    r = app.test_client().get("/")
    expected = error if isinstance(error, int) else {Conflict: 409, InvalidInput: 422}.get(
        type(error), 500)
    assert r.status_code == expected and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert_error_page(html, PAGE_ERRORS[expected][0])
    assert "db exploded" not in html
    if isinstance(error, Conflict | InvalidInput):
        assert error.message in html
