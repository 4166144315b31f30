"""A whole paid job in Chromium: the estimate on the Book page, the hold at booking, a
worker accepts, completes with parts above the hold plus the tolerance on the Work page,
the resident approves the final amount and confirms on the job page (the receipt shows),
and the worker's earnings page shows the balance and pays some of it out."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from dispatch.db.models import Role
from tests.helpers import CENTER, Factory, offset, sql
from tests.live import LiveServer
from tests.test_browser import browser, login, new_context, page_errors, shot  # noqa: F401


def test_a_whole_paid_job(browser: Browser, live_server: LiveServer,  # noqa: F811
                          make: Factory) -> None:
    start = offset(*CENTER, north_m=800)
    worker_email, resident_email = "payee@example.test", "payer@example.test"
    worker_id, _ = make.worker(lat=start[0], lng=start[1], skills=("leak-repair",),
                               email=worker_email)
    make.user(Role.RESIDENT, email=resident_email)
    resident_ctx = new_context(browser, live_server, at=CENTER)
    worker_ctx = new_context(browser, live_server, phone=True, at=start)
    resident, worker = resident_ctx.new_page(), worker_ctx.new_page()
    errors = page_errors(resident) + page_errors(worker)
    try:
        login(worker, worker_email)
        expect(worker.locator("#availability")).to_have_text("online")
        login(resident, resident_email)
        resident.select_option("#category", label="Leak repair")
        expect(resident.locator("#estimate")).to_contain_text("$179\u2013$239")
        resident.fill("#description", "The kitchen tap will not stop")
        resident.click("#locate")
        expect(resident.locator("#where")).to_contain_text("Pin at")
        resident.click("#submit")
        resident.wait_for_url("**/jobs/*")
        job_id = int(resident.url.rsplit("/", 1)[1])
        assert sql(make.app, "SELECT held_cents FROM job_payments WHERE job_id = :j",
                   j=job_id)[0][0] == 23900  # the hold: the high estimate

        offer = worker.locator(".offer")
        expect(offer).to_be_visible(timeout=10_000)
        offer.locator(".accept").click()
        expect(worker.locator("#active")).to_be_visible()
        for status in ("arrived", "in_progress"):
            worker.click(f"#moves button[data-status={status}]")
            expect(worker.locator("#active-status")).to_have_text(status.replace("_", " "))
        worker.click("#moves button[data-status=completed]")
        form = worker.locator("#complete-form")
        expect(form).to_be_visible()
        worker.fill("#complete-minutes", "60")
        worker.fill("#complete-rate", "140")
        worker.click("#complete-add-part")
        worker.click("#complete-add-part")
        rows = worker.locator("#complete-parts .part")
        rows.nth(0).locator(".part-description").fill("Cartridge")
        rows.nth(0).locator(".part-amount").fill("45")
        rows.nth(1).locator(".part-description").fill("Spare")
        rows.nth(1).locator(".part-amount").fill("9")
        rows.nth(1).locator(".part-remove").click()
        expect(rows).to_have_count(1)
        # 59 call-out + 40 urgent + 140 labour + 45 parts: above $239 + 10 %.
        expect(worker.locator("#complete-total")).to_have_text("$284")
        shot(worker, "work-completion-form")
        worker.click("#complete-submit")
        expect(worker.locator("#work-error")).to_contain_text("the payer approves it first")
        expect(worker.locator("#active")).to_be_hidden()

        expect(resident.locator("#status")).to_have_text("completed", timeout=10_000)
        expect(resident.locator("#final-decision")).to_be_visible(timeout=10_000)
        expect(resident.locator("#final-total")).to_have_text("$284")
        expect(resident.locator("#line-items tbody tr")).to_have_count(4)
        expect(resident.locator("#confirm-done")).to_be_hidden()
        shot(resident, "job-final-amount")
        resident.click("#approve-amount")
        expect(resident.locator("#final-note")).to_contain_text("Approved", timeout=10_000)
        expect(resident.locator("#confirm-done")).to_be_visible()
        resident.click("#confirm-done")
        expect(resident.locator("#status")).to_have_text("closed", timeout=10_000)
        expect(resident.locator("#receipt")).to_be_visible(timeout=10_000)
        expect(resident.locator("#receipt-charged")).to_have_text("$284")
        shot(resident, "job-receipt")
        resident.click("#receipt-link")
        expect(resident.locator("h1")).to_contain_text("Receipt INV-")
        captured = sql(make.app, "SELECT captured_cents FROM job_payments WHERE job_id = :j",
                       j=job_id)[0][0]
        assert captured == 28400

        worker.goto("/earnings")
        net = 28400 - -(-28400 * 15 // 100)  # less the platform's 15 %
        expect(worker.locator("#balance")).to_have_text(f"${net / 100:,.2f}")
        worker.fill("#instant-amount", "100")
        worker.click("#instant-submit")
        expect(worker.locator("#payouts tbody tr")).to_have_count(1)
        expect(worker.locator("#payouts tbody tr .amount")).to_have_text("$100")
        shot(worker, "earnings-after-job")
        assert sql(make.app, "SELECT count(*) FROM payouts WHERE worker_id = :w",
                   w=worker_id)[0][0] == 1
        assert errors == [], errors
    finally:
        resident_ctx.close()
        worker_ctx.close()
