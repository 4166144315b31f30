"""Hostile CSV uploads: a few dozen files people export from odd programs, or craft, thrown at
both CSV endpoints (units import and batches), by a script with a token and by the pages'
own uploads with the login session. Every answer is a refusal naming the field (and, for a
broken file, the line) or a success; never a 500, and a refused file stores nothing."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.db.models import Role
from dispatch.services import batches, portfolio
from tests.helpers import Factory, page_login, sql

UNITS_HEADER = "property,label,address,lat,lng"
UNIT_ROW = "Elm Court,H{n},9 Elm St,37.7749,-122.4194"
BATCH_HEADER = "property,unit,category,description,urgency,budget_cap"
BATCH_ROW = "Elm Court,1A,leak-repair,Leak under the sink {n},urgent,"
HUGE = "x" * 140_000  # beyond the csv module's field limit (131,072)


@dataclass(frozen=True)
class Nasty:
    name: str
    body: bytes
    # What the answer must be: "ok" (2xx), a message id with its line (4xx naming both), or
    # "refused" (some 4xx naming a field: what is refused depends on the endpoint).
    kind: str = "refused"
    line: int | None = None


def nasty_files(header: str, row: str, limit: int) -> list[Nasty]:
    """The same hostile shapes for either file; `row` is a good row with a {n} to vary."""
    def good(n: int) -> str:
        return row.format(n=n)

    cells = len(header.split(","))
    junk = random.Random(19).randbytes(4096)
    return [
        Nasty("utf8 bom", b"\xef\xbb\xbf" + f"{header}\n{good(1)}\n".encode(), "ok"),
        Nasty("two boms", ("\ufeff\ufeff" + f"{header}\n{good(2)}\n").encode(), "ok"),
        Nasty("utf16 with bom", f"{header}\n{good(3)}\n".encode("utf-16"), "file.not_utf8", 1),
        Nasty("utf16le no bom", f"{header}\n{good(3)}\n".encode("utf-16-le"), "file.nul", 1),
        Nasty("utf16be with bom", b"\xfe\xff" + f"{header}\n".encode("utf-16-be"),
              "file.not_utf8", 1),
        Nasty("nul in a cell", f"{header}\n{good(4)}\n".replace("Elm", "El\x00m").encode(),
              "file.nul", 2),
        Nasty("binary junk", junk),
        Nasty("png", b"\x89PNG\r\n\x1a\n" + junk[:200]),
        Nasty("empty", b"", "file.missing_columns"),
        Nasty("blank lines only", b"\n\r\n\r\n   \n", "file.missing_columns"),
        Nasty("commas only", b",,,,\n,,,,\n", "file.missing_columns"),
        Nasty("header only", f"{header}\n".encode(), "file.no_rows"),
        Nasty("header only, no line end", f"{header}".encode(), "file.no_rows"),
        Nasty("duplicate header", f"{header},{header.split(',')[1]}\n{good(5)},x\n".encode(),
              "file.duplicate_column", 1),
        Nasty("missing columns", f"{header.split(',', 1)[1]}\n{good(6)}\n".encode(),
              "file.missing_columns"),
        Nasty("semicolons", f"{header}\n{good(7)}\n".replace(",", ";").encode(),
              "file.missing_columns"),
        Nasty("tabs", f"{header}\n{good(7)}\n".replace(",", "\t").encode(),
              "file.missing_columns"),
        Nasty("extra cell: unquoted comma", f"{header}\n{good(8)}\n{good(9)},oops, a comma\n"
              .encode(), "file.extra_cells", 3),
        Nasty("trailing empty cells", f"{header},,\n{good(10)},,,,\n".encode(), "ok"),
        Nasty("short row", f"{header}\n{good(11).rsplit(',', 2)[0]}\n".encode(), "ok"),
        Nasty("unbalanced quote", f'{header}\n{good(12)}\n"{good(13)}\n{good(14)}\n'.encode(),
              "file.unclosed_quote", 3),
        Nasty("a lone quote", f'{header}\n"\n'.encode(), "file.unclosed_quote", 2),
        Nasty("text after a closing quote", f'{header}\n"Elm Court" x,{good(15).split(",", 1)[1]}'
              "\n".encode(), "file.unreadable", 2),
        Nasty("quote inside a bare cell", (f"{header}\n" + good(16).replace("Elm", 'E"lm') +
                                           "\n").encode(), "ok"),
        Nasty("quoted header", (",".join(f'"{c}"' for c in header.split(",")) + f"\n{good(17)}\n")
              .encode(), "ok"),
        Nasty("padded header", (" , ".join(header.split(",")) + f"\n{good(18)}\n").encode(), "ok"),
        Nasty("huge header cell", f"{HUGE}{header}\n{good(19)}\n".encode(),
              "file.cell_too_long", 1),
        Nasty("huge cell in a row", f"{header}\n{good(20)}\n{HUGE},{good(21)}\n".encode(),
              "file.cell_too_long", 3),
        Nasty("huge quoted cell", f'{header}\n"{HUGE}",{good(21)}\n'.encode(),
              "file.cell_too_long", 2),
        Nasty("very long line, cells under the limit",
              f"{header}\n{good(22)}\n".encode() + (",".join(["y" * 100_000] + ["z"] *
                                                              (cells - 1)) + "\n").encode(),
              "ok"),
        Nasty("rows beyond the limit", (header + "\n" + "\n".join(
            good(1000 + i) for i in range(limit + 1)) + "\n").encode()),
        Nasty("cr only (old Mac)", f"{header}\r{good(23)}\r{good(24)}\r".encode(), "ok"),
        Nasty("mixed line ends", f"{header}\r\n{good(25)}\r{good(26)}\n{good(27)}\r\n".encode(),
              "ok"),
        Nasty("cr inside a quoted cell", f'{header}\n{good(28)}\r\n'.replace(
            "Elm Court", '"Elm\rCourt"', 1).encode(), "ok"),
        Nasty("blank lines between rows", f"{header}\n\n{good(29)}\n\n\n{good(30)}\n".encode(),
              "ok"),
        Nasty("formulas", (f"{header}\n" + "\n".join(
            good(31 + i).replace(",", f",{lead}cmd|' /C calc'!A0 ", 1)
            for i, lead in enumerate("=+-@")) + "\n").encode(), "ok"),
        Nasty("formula in the header", f"=1+1,{header}\n,{good(35)}\n".encode(), "ok"),
        Nasty("latin-1 on line 3", f"{header}\n{good(36)}\n".encode() +
              good(37).replace("Elm Court", "Elm Courté").encode("latin-1") + b"\n",
              "file.not_utf8", 3),
        Nasty("cp1252 quotes", f"{header}\n".encode() + "\u201cElm\u201d".encode("cp1252") +
              b"\n", "file.not_utf8", 2),
        Nasty("encoded surrogate", f"{header}\n".encode() + b"Elm \xed\xa0\x80 Court\n",
              "file.not_utf8", 2),
        Nasty("overlong utf-8", f"{header}\n".encode() + b"\xc0\xaf\n", "file.not_utf8", 2),
        Nasty("control characters", f"{header}\n{good(38)}\n".replace(
            "Elm St", "Elm\x01\x07\x1b[31m St").replace("Leak", "Leak\x08\x0c").encode(), "ok"),
        Nasty("emoji and bidi", f"{header}\n{good(39)}\n".replace(
            "Elm St", "Elm \U0001f6b0\u202e tS").replace("Leak", "Leak \U0001f4a7\u2028").encode(),
              "ok"),
        Nasty("byte order mark mid-file", f"{header}\n\ufeff{good(40)}\n".encode(), "ok"),
        Nasty("a few more columns", (header + ",notes,floor\n" + good(41) + ",ring twice,3\n")
              .encode(), "ok"),
        Nasty("hundreds of thousands of columns", (",".join(["c"] * 400_000) + "\n" +
                                                   "x\n" * 100_000).encode(),
              "file.too_many_columns", 1),
        Nasty("only a header of junk", b"\x7f\x7f\x7f\n\x7f\n", "file.missing_columns"),
        Nasty("one cell per line", "\n".join(header.split(",")).encode() + b"\n",
              "file.missing_columns"),
        Nasty("CRLF inside a quoted cell", f'{header}\r\n{good(42)}\r\n'.replace(
            "Elm Court", '"Elm\r\nCourt"', 1).encode(), "ok"),
    ]


def stored(app: Flask) -> list[Any]:
    """Everything an upload may write, to compare before and after a refusal."""
    return [sql(app, "SELECT * FROM units ORDER BY id"),
            sql(app, "SELECT id, rows, rejected, status FROM batches ORDER BY id"),
            sql(app, "SELECT id, status FROM jobs ORDER BY id")]


def page_session(app: Flask, user_id: int) -> tuple[FlaskClient, dict[str, str]]:
    """The manager's browser: the login session, and the CSRF token the page carries."""
    page = app.test_client()
    page_login(app, page, user_id)
    html = page.get("/properties").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert token, html[:500]
    return page, {"X-CSRFToken": token.group(1)}


def assert_4xx_names_the_problem(answer: Any, nasty: Nasty, where: str) -> None:
    assert 400 <= answer.status_code < 500, (where, answer.status_code, answer.get_data()[:300])
    if answer.status_code == 413:  # over the body limit: refused before anything is read
        return
    error = answer.json["error"]
    assert error["fields"] and all(f["field"] and f["problem"] for f in error["fields"]), where
    if nasty.kind != "refused":
        assert error["fields"][0]["kind"] == nasty.kind, (where, error)
    if nasty.line is not None:
        assert error["line"] == nasty.line, (where, error)
        assert re.search(rf"\b[Ll]ine {nasty.line}\b", error["fields"][0]["problem"]), error
    if error["fields"][0].get("kind", "").startswith("file.") and "line" in error:
        assert f"ine {error['line']}" in error["fields"][0]["problem"], (where, error)


@pytest.mark.parametrize("endpoint", ["units", "batches"])
def test_hostile_csv_files_are_refused_by_line_or_read_never_a_500(
    app: Flask, client: FlaskClient, make: Factory, endpoint: str
) -> None:
    user_id, pm = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).status_code == 201
    assert client.post("/api/v1/properties", json={"name": "Elm Court", "address": "1 Elm St"},
                       headers=pm).status_code == 201
    kept = client.post("/api/v1/units/import", content_type="text/csv", headers=pm, data=(
        f"{UNITS_HEADER},tenant_name\nElm Court,1A,1 Elm St Apt 1A,37.7749,-122.4194,Ann\n"
        "Elm Court,1B,1 Elm St Apt 1B,37.7750,-122.4195,Bo\n").encode())
    assert kept.status_code == 200 and len(kept.json["accepted"]) == 2, kept.json
    first = client.post("/api/v1/batches?batch_key=kept", content_type="text/csv", headers=pm,
                        data=f"{BATCH_HEADER}\n{BATCH_ROW.format(n=0)}\n".encode())
    assert first.status_code == 202, first.json
    before = stored(app)
    page, csrf = page_session(app, user_id)
    if endpoint == "units":
        files, path = nasty_files(UNITS_HEADER, UNIT_ROW, portfolio.MAX_IMPORT_ROWS), \
            "/api/v1/units/import"
    else:
        files, path = nasty_files(BATCH_HEADER, BATCH_ROW, batches.MAX_ROWS), \
            "/api/v1/batches"
    assert len(files) >= 40
    for n, nasty in enumerate(files):
        for who, caller, headers in (("api", client, pm), ("page", page, csrf)):
            where = f"{endpoint} {who}: {nasty.name}"
            query = f"?batch_key=h{n}-{who}&confirm_duplicate=true" if endpoint == "batches" \
                else ""
            answer = caller.post(path + query, data=nasty.body, content_type="text/csv",
                                 headers=headers)
            assert answer.status_code != 500, (where, answer.get_data()[:500])
            if nasty.kind == "ok":
                assert answer.status_code in (200, 202), (where, answer.json)
                continue
            assert_4xx_names_the_problem(answer, nasty, where)
            assert stored(app) == before, f"{where}: a refused file stored something"
        now = stored(app)  # what was there before every upload is still there, as it was
        assert all(row in now[0] for row in before[0]), nasty.name
        assert all(row in now[1] for row in before[1]), nasty.name
        before = now
    units = {u["label"]: u for u in client.get("/api/v1/units", headers=pm).json["units"]}
    assert units["1A"]["tenant_name"] == "Ann" and units["1B"]["tenant_name"] == "Bo"


def test_an_old_mac_file_is_read_line_by_line(client: FlaskClient, make: Factory) -> None:
    """CR-only line ends are read, not refused: each row on its own line number."""
    _, pm = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).status_code == 201
    assert client.post("/api/v1/properties", json={"name": "Elm Court", "address": "1 Elm St"},
                       headers=pm).status_code == 201
    units = (f"{UNITS_HEADER}\r{UNIT_ROW.format(n=1)}\rOak Plaza,2A,2 Oak St,37.77,-122.41\r"
             f"{UNIT_ROW.format(n=2)}\r")
    r = client.post("/api/v1/units/import", data=units.encode(), content_type="text/csv",
                    headers=pm)
    assert r.status_code == 200, r.json
    assert [u["label"] for u in r.json["accepted"]] == ["H1", "H2"]
    assert [(p["line"], p["field"]) for p in r.json["rejected"]] == [(3, "property")]
    batch = (f"{BATCH_HEADER}\r{BATCH_ROW.format(n=1).replace('1A', 'H1')}\r"
             f"{BATCH_ROW.format(n=2).replace('1A', '9Z')}\r")
    b = client.post("/api/v1/batches?batch_key=mac", data=batch.encode(),
                    content_type="text/csv", headers=pm)
    assert b.status_code == 202, b.json
    assert b.json["accepted_rows"] == 1
    assert [(p["line"], p["field"]) for p in b.json["rejected"]] == [(3, "unit")]


def test_a_row_with_an_extra_cell_names_its_line_in_both_files(client: FlaskClient,
                                                               make: Factory) -> None:
    """An unquoted comma in a description shifts the cells: the file is refused whole,
    naming the line, instead of a crash (batches) or a half-read row (units)."""
    _, pm = make.user(Role.PROPERTY_MANAGER)
    assert client.post("/api/v1/org", json={"name": "Bay Homes"}, headers=pm).status_code == 201
    batch = (f"{BATCH_HEADER}\n{BATCH_ROW.format(n=1)}\n"
             "Elm Court,1A,leak-repair,Leak, under the sink,urgent,250\n")
    r = client.post("/api/v1/batches?batch_key=comma", data=batch.encode(),
                    content_type="text/csv", headers=pm)
    assert r.status_code == 400, r.json
    assert r.json["error"]["line"] == 3
    assert r.json["error"]["fields"][0] == {
        "field": "file", "kind": "file.extra_cells",
        "problem": "Line 3 has 7 cells but the first line names 6 columns; put a cell that "
                   "holds a comma in double quotes."}
    units = f"{UNITS_HEADER}\nElm Court,1A,1 Elm St, Apt 1A,37.7749,-122.4194\n"
    u = client.post("/api/v1/units/import", data=units.encode(), content_type="text/csv",
                    headers=pm)
    assert u.status_code == 400 and u.json["error"]["line"] == 2, u.json
