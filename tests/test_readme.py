"""The README, followed to the letter, so it cannot drift from the product again.

- Every demo account it names logs in with the password it gives.
- "A whole job by hand" is walked step by step in Chromium: the test reads the numbered
  steps, and every bold word of a step (a link, a button, a choice, a page) must be on the
  page at that step; the accounts and the typed address come from the step's own text.
- The shell blocks run as they are (curl and jq) against a live server, and what the prose
  around them claims (the refused lines, the booked category) is checked against what they
  print."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from flask import Flask
from playwright.sync_api import Browser, Page, expect

from tests import test_browser
from tests.helpers import sql
from tests.live import LiveServer
from tests.test_batches import run_queue
from tests.test_browser import new_context, page_errors, shot

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
browser = test_browser.browser  # the module's Chromium
DEMO_EMAIL = re.compile(r"`([a-z0-9]+@demo\.dispatch\.test)`")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def steps(title: str) -> list[str]:
    """The numbered steps of a section, each as one line of text."""
    found = re.findall(r"^\d+\. (.*?)(?=^\d+\. |^\s*$)", section(title), re.M | re.S)
    return [" ".join(step.split()) for step in found]


def bold(step: str) -> list[str]:
    return re.findall(r"\*\*(.+?)\*\*", step)


def password() -> str:
    return re.search(r"password `([^`]+)`", README).group(1)  # type: ignore[union-attr]


def seed(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output


def test_every_demo_account_the_readme_names_logs_in(app: Flask) -> None:
    seed(app)
    accounts = set(DEMO_EMAIL.findall(README))
    assert {"resident@demo.dispatch.test", "manager@demo.dispatch.test",
            "admin@demo.dispatch.test", "worker1@demo.dispatch.test",
            "worker40@demo.dispatch.test"} <= accounts
    client = app.test_client()
    for email in sorted(accounts):
        r = client.post("/api/v1/auth/token", json={"email": email, "password": password()})
        assert r.status_code == 201, (email, r.get_json())


def visible(pages: list[Page], word: str) -> None:
    """The word is on one of the pages: a link, a button, a choice, a label or text."""
    pattern = re.compile(re.escape(word))
    for _ in range(50):
        for page in pages:
            for candidate in (page.get_by_role("link", name=pattern),
                              page.get_by_role("button", name=pattern),
                              page.locator("option", has_text=pattern),
                              page.get_by_text(pattern)):
                if any(c.is_visible() for c in candidate.all()):
                    return
        pages[0].wait_for_timeout(200)
    raise AssertionError(f"the README's **{word}** is on no page")


def login(page: Page, link: str, email: str) -> None:
    page.goto("/")
    page.get_by_role("link", name=link, exact=True).first.click()
    page.fill("#email", email)
    page.fill("#password", password())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("networkidle")


def test_a_whole_job_by_hand(app: Flask, browser: Browser,
                             geocoded_server: LiveServer) -> None:
    walk = steps("A whole job by hand")
    assert len(walk) == 6, walk  # the walk below follows these six steps
    seed(app)
    worker_ctx = new_context(browser, geocoded_server, phone=True)  # location blocked
    resident_ctx = new_context(browser, geocoded_server)
    worker, resident = worker_ctx.new_page(), resident_ctx.new_page()
    errors = page_errors(worker) + page_errors(resident)
    try:
        # 1. The worker logs in and lands on Work, online.
        [worker_email] = DEMO_EMAIL.findall(walk[0])
        log_in, work_page = bold(walk[0])
        login(worker, log_in, worker_email)
        expect(worker).to_have_url(f"{geocoded_server.url}/work")
        expect(worker.locator("#availability")).to_have_text("online")
        visible([worker], work_page)

        # 2. The resident logs in and lands on Book.
        [resident_email] = DEMO_EMAIL.findall(walk[1])
        log_in, book_page = bold(walk[1])
        login(resident, log_in, resident_email)
        expect(resident).to_have_url(f"{geocoded_server.url}/book")
        visible([resident], book_page)

        # 3. Service, description, the address picked from the list, Book now.
        service, address_label, place, book_now = bold(walk[2])
        typed = re.search(r"type `([^`]+)`", walk[2]).group(1)  # type: ignore[union-attr]
        resident.select_option("#category", label=service)
        resident.fill("#description", "Water is pouring from under the sink")
        resident.get_by_label(address_label, exact=True).fill(typed)
        resident.get_by_role("option", name=place).click()
        expect(resident.locator("#where")).to_contain_text("Pin at")
        shot(resident, "readme-book")
        resident.get_by_role("button", name=book_now).click()
        resident.wait_for_url("**/jobs/*")

        # 4. Workers are being asked; the offer reaches worker1, who accepts.
        expect(resident.locator("#worker")).to_contain_text("Asking", timeout=10_000)
        work_page, accept = bold(walk[3])
        visible([worker], work_page)
        offer = worker.locator(".offer")
        expect(offer).to_be_visible(timeout=15_000)
        offer.get_by_role("button", name=accept).click()
        expect(resident.locator("#status")).to_have_text("assigned", timeout=10_000)
        expect(resident.locator("main")).to_contain_text("Worker 1")
        masked = resident.locator("#masked-number")
        expect(masked).to_have_text(re.compile(r"^\+\d{11}$"))
        pool = {row[0] for row in sql(app, "SELECT e164 FROM pool_numbers")}
        assert masked.inner_text() in pool  # a pool number, neither side's own

        # 5. Each move in turn, followed on the resident's page.
        work_page, *moves = bold(walk[4])
        visible([worker], work_page)
        assert moves == ["On my way", "I have arrived", "Start work"], moves
        for move, status in zip(moves, ("en route", "arrived", "in progress"), strict=True):
            worker.get_by_role("button", name=move).click()
            expect(resident.locator("#status")).to_have_text(status, timeout=10_000)

        # 6. Job done opens the completion form: time and a part, then the payer confirms.
        done, minutes, add_part, send, approve, confirm = bold(walk[5])
        worker.get_by_role("button", name=done).click()
        worker.get_by_label(minutes).fill("45")
        worker.get_by_role("button", name=add_part).click()
        worker.locator("#complete-parts .part-description").fill("Washer")
        worker.locator("#complete-parts .part-amount").fill("4.50")
        expect(worker.locator("#complete-total")).not_to_have_text("")
        worker.get_by_role("button", name=send).click()
        expect(resident.locator("#status")).to_have_text("completed", timeout=10_000)
        expect(resident.locator("#line-items")).to_contain_text("Washer")
        visible([resident], confirm)
        # Within the hold: the approval the README names is there, and not asked for.
        expect(resident.locator("#approve-amount")).to_have_text(approve)
        expect(resident.locator("#approve-amount")).to_be_hidden()
        # The resident confirms: the final amount is captured and the worker paid.
        resident.get_by_role("button", name=confirm).click()
        expect(resident.locator("#paid")).to_be_visible(timeout=10_000)
        expect(resident.locator("#receipt")).to_contain_text("Charged")
        assert sql(app, "SELECT count(*) FROM jobs WHERE status = 'closed'")[0][0] == 1
        [(final, captured)] = sql(app, "SELECT j.final_amount_cents, p.captured_cents FROM jobs j "
                                       "JOIN job_payments p ON p.job_id = j.id")
        assert final == captured and final > 0
        shot(resident, "readme-done")
        assert errors == []
    finally:
        worker_ctx.close()
        resident_ctx.close()


def shell_blocks(title: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section(title), re.S)


def run_block(block: str, server: LiveServer) -> str:
    host = server.url.removeprefix("http://")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.replace("localhost:8000", host)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_batch_commands_print_what_the_readme_says(app: Flask,
                                                       live_server: LiveServer,
                                                       tmp_path: Path) -> None:
    """The batch is sent, the RQ worker (`make run` keeps one) does its work, and the
    batch is read: the test runs the block in those two halves around a burst worker."""
    seed(app)
    [block] = shell_blocks("A property manager's day")
    block = block.replace("batch.json", str(tmp_path / "batch.json"))
    token_end = block.index(".token)") + len(".token)")
    read_at = block.index('curl -s "localhost:8000/api/v1/batches/$(')
    printed = run_block(block[:read_at], live_server).splitlines()
    run_queue(app)
    printed += run_block(block[:token_end] + "\n" + block[read_at:], live_server).splitlines()
    claimed = section("A property manager's day").split("```")[-1]
    claimed_lines = {int(n) for n in re.findall(r"line (\d+)", claimed)}
    refused = [json.loads(line) for line in printed if line.startswith('{"line"')]
    assert {r["line"] for r in refused} == claimed_lines == {7, 12}
    batch = json.loads(printed[-1])
    assert batch["accepted_rows"] == 9 and len(batch["jobs"]) <= 9
    assert "assigned" not in batch["jobs"]  # nobody is assigned before a worker accepts


def test_the_booking_commands_book_the_category_they_name(app: Flask,
                                                          live_server: LiveServer) -> None:
    seed(app)
    [block] = shell_blocks("Booking through the API")
    job = json.loads(run_block(block, live_server).splitlines()[-1])
    named = re.search(r'select\(\.slug\? == "([a-z-]+)"\)', block).group(1)  # type: ignore[union-attr]
    assert job["category"] == named
    assert job["status"] == "dispatching" and isinstance(job["id"], int)
