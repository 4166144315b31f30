"""Money on the accept path: what the escrow hold costs a booking and the accept after it.

The path a job takes until a worker holds it, through the real services: `booking.book_urgent`
(match, price, hold, insert, first wave, commit) and `dispatching.accept_offer`. Measured with
the hold (PAYMENT_PROVIDER=simulated, the default: an authorization stored by the simulated
processor, the `job_payments` row and the ledger's `hold` transaction, all in the booking) and
without it, the booking's two escrow steps skipped (`without_hold`: the job as one booked
before escrow existed, or a batch job with no card to hold on). The two modes alternate
booking by booking on one connection, so drift hits both alike.

Per operation: SQL statements sent (SQLAlchemy's `before_cursor_execute`, every connection of
the app's engine, the simulated processor's included), this process's CPU
(`time.process_time`), the database's CPU (utime + stime of the PostgreSQL backends the
engine's connections run on, from /proc, when the server runs on this machine) and the
wall time. Own database `<name>_money_bench`.

    python -m bench.money_path [--bookings 300]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.match import ensure_database, migrate, percentile
from dispatch import create_app
from dispatch.db import db
from dispatch.db.models import Job, User
from dispatch.domain.commands import JobIn
from dispatch.infra.config import Settings, _sqlalchemy_url
from dispatch.infra.payments.base import Authorization
from dispatch.infra.presence import open_for_good
from dispatch.infra.redis import redis_connection
from dispatch.services import booking, dispatching, escrow, ledger

CENTER = (37.7749, -122.4194)  # San Francisco, inside the service area
CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_url() -> str:
    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=f"{base.database}_money_bench").render_as_string(
        hide_password=False)


@contextmanager
def without_hold() -> Iterator[None]:
    """Booking with its escrow steps skipped: no authorization asked, no payment row, no
    ledger hold; the job commits as booking commits it. A bench switch only: the product
    always holds (a booking is the services' own code either way)."""
    hold, commit = escrow.hold_for_booking, escrow.commit_booking

    def no_hold(*_: Any, **__: Any) -> None:
        return None

    def commit_only(session: Session, job: Job, held: Authorization | None,
                    commit_fn: Callable[[Session], None], now: Any) -> None:
        commit_fn(session)

    escrow.hold_for_booking = no_hold  # type: ignore[assignment]
    escrow.commit_booking = commit_only  # type: ignore[assignment]
    try:
        yield
    finally:
        escrow.hold_for_booking, escrow.commit_booking = hold, commit


class Meter:
    """Statements, this process's CPU, the server's CPU (its backends') and wall time of one
    operation."""

    def __init__(self, engine: Any) -> None:
        self.statements = 0
        self.backends: set[int] = set()
        event.listen(engine, "before_cursor_execute", self._count)
        event.listen(engine, "connect", self._backend)

    def _count(self, *_: Any) -> None:
        self.statements += 1

    def _backend(self, dbapi_conn: Any, _: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.backends.add(int(cur.fetchone()[0]))

    def server_ticks(self) -> int | None:
        total = 0
        for pid in self.backends:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return None  # the server is elsewhere (or the backend is gone)
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total

    def measure(self, fn: Callable[[], Any], into: Sample) -> Any:
        s0, c0, t0, k0 = self.statements, time.process_time(), time.perf_counter(), \
            self.server_ticks()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        k1 = self.server_ticks()
        into.statements.append(self.statements - s0)
        into.cpu_ms.append(cpu * 1000)
        into.wall_ms.append(wall * 1000)
        if k0 is not None and k1 is not None:
            into.server_ticks += k1 - k0
        else:
            into.server_known = False
        return out


@dataclass
class Sample:
    statements: list[int] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    server_ticks: int = 0
    server_known: bool = True

    def server_ms(self) -> float | None:
        if not self.server_known or not self.statements:
            return None
        return 1000 * self.server_ticks / CLK_TCK / len(self.statements)


def seed(workers: int, run: str) -> tuple[int, list[User], list[int]]:
    """Online, verified workers around the centre (fresh positions, sockets open for good so
    offers go by socket) and one resident per booking. Returns the category, the workers
    and the category id."""
    s = db.session
    category_id = s.execute(text(
        "SELECT min(id) FROM categories WHERE bookable AND slug = 'leak-repair'")).scalar_one() \
        or s.execute(text("SELECT min(id) FROM categories WHERE bookable")).scalar_one()
    ids = s.execute(text("""
INSERT INTO users (email, name, phone_e164, role, password_hash)
SELECT 'w' || i || '-' || :run || '@bench.test', 'Worker ' || i,
       '+1' || lpad((floor(random() * 1e10))::bigint::text, 10, '0'), 'worker', 'x'
  FROM generate_series(1, :n) i RETURNING id"""), {"run": run, "n": workers}).scalars().all()
    s.execute(text("""
INSERT INTO workers (user_id, travel_mode, service_radius_m, availability, location,
                     location_at, location_received_at, location_accuracy_m)
SELECT u, 'car', 20000, 'online',
       ST_SetSRID(ST_MakePoint(:lng + (random() - 0.5) * 0.05,
                               :lat + (random() - 0.5) * 0.05), 4326)::geography,
       now(), now(), 10
  FROM unnest(CAST(:ids AS bigint[])) u"""),
              {"ids": list(ids), "lat": CENTER[0], "lng": CENTER[1]})
    s.execute(text("INSERT INTO worker_skills (worker_id, category_id, verified, verified_at) "
                   "SELECT u, :c, true, now() FROM unnest(CAST(:ids AS bigint[])) u"),
              {"ids": list(ids), "c": category_id})
    s.commit()
    return category_id, [User(id=i, role="worker") for i in ids], list(ids)


def resident(run: str, i: int) -> User:
    uid = db.session.execute(text("""
INSERT INTO users (email, name, phone_e164, role, password_hash)
VALUES (:e, 'Resident', :p, 'resident', 'x') RETURNING id"""),
        {"e": f"r{i}-{run}@bench.test", "p": f"+1{uuid.uuid4().int % 10**10:010d}"}
    ).scalar_one()
    db.session.commit()
    return User(id=uid, role="resident")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=300,
                        help="bookings (each then accepted) per mode")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # no pool numbers: every accept would say so
    url = bench_url()
    ensure_database(url)
    migrate(url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    run = uuid.uuid4().hex[:10]
    warm = min(20, args.bookings)
    n = args.bookings + warm
    with app.app_context():
        s = db.session
        s.execute(text("UPDATE workers SET availability = 'offline'"))  # earlier runs' crews
        s.commit()
        category_id, crew, ids = seed(2 * n + 8, run)
        redis = redis_connection()
        for worker_id in ids:
            open_for_good(redis, worker_id, f"bench-{run}")
        residents = [resident(run, i) for i in range(2 * n)]
        meter = Meter(db.engine)
        by_id = {w.id: w for w in crew}
        results = {mode: (Sample(), Sample()) for mode in ("hold", "no hold")}
        holds_before = s.execute(text("SELECT count(*) FROM job_payments")).scalar_one()
        s.rollback()

        def one(i: int, mode: str, measured: bool) -> None:
            booked, accepted = results[mode]
            person = residents[i]
            body = JobIn(category_id=category_id, description=f"money bench {i}",
                         lat=CENTER[0], lng=CENTER[1])

            def book() -> Job:
                job, created = booking.book_urgent(s, person, body, f"{run}-{i}")
                assert created
                return job

            if mode == "no hold":
                with without_hold():
                    job = meter.measure(book, booked) if measured else book()
            else:
                job = meter.measure(book, booked) if measured else book()
            job_id = job.id
            offer_id, worker_id = s.execute(text(
                "SELECT id, worker_id FROM offers WHERE job_id = :j AND status = 'pending' "
                "ORDER BY eta_seconds LIMIT 1"), {"j": job_id}).one()
            s.rollback()

            def accept() -> Any:
                return dispatching.accept_offer(s, offer_id, by_id[worker_id])

            if measured:
                meter.measure(accept, accepted)
            else:
                accept()

        for i in range(warm):  # plans, caches, the provider's first use
            one(2 * i, "hold" if i % 2 else "no hold", measured=False)
        for i in range(warm, n):
            modes = ["hold", "no hold"] if i % 2 else ["no hold", "hold"]
            for k, mode in enumerate(modes):
                one(2 * i + k, mode, measured=True)
        held = s.execute(text("SELECT count(*) FROM job_payments")).scalar_one() - holds_before
        problems = ledger.check(s)
        s.rollback()

    def row(name: str, x: Sample) -> str:
        server = x.server_ms()
        return (f"{name:<22}{statistics.fmean(x.statements):>8.1f}"
                f"{statistics.fmean(x.cpu_ms):>10.2f}"
                f"{(f'{server:.2f}' if server is not None else 'n/a'):>12}"
                f"{percentile(x.wall_ms, 50):>10.2f}{percentile(x.wall_ms, 99):>10.2f}")

    print()
    print(f"bookings per mode={args.bookings} (+{warm} warm-up), modes alternating, one "
          f"connection; holds stored this run: {held}")
    print(f"{'operation':<22}{'SQL':>8}{'CPU ms':>10}{'server ms':>12}{'p50 ms':>10}"
          f"{'p99 ms':>10}")
    for mode in ("hold", "no hold"):
        booked, accepted = results[mode]
        print(row(f"booking, {mode}", booked))
        print(row(f"accept, {mode}", accepted))
    hb, ha = results["hold"]
    nb, na = results["no hold"]

    def ratio(a: list[float] | list[int], b: list[float] | list[int]) -> float:
        return statistics.fmean(a) / statistics.fmean(b)

    def server_ratio(a: Sample, b: Sample) -> str:
        x, y = a.server_ms(), b.server_ms()
        return f"{x / y:.2f}" if x is not None and y else "nan"

    path_with = [b + a for b, a in zip(hb.cpu_ms, ha.cpu_ms, strict=True)]
    path_without = [b + a for b, a in zip(nb.cpu_ms, na.cpu_ms, strict=True)]
    print(f"with/without: booking SQL {ratio(hb.statements, nb.statements):.2f}x "
          f"(+{statistics.fmean(hb.statements) - statistics.fmean(nb.statements):.1f}), "
          f"booking CPU {ratio(hb.cpu_ms, nb.cpu_ms):.2f}x, accept SQL "
          f"{ratio(ha.statements, na.statements):.2f}x, accept CPU "
          f"{ratio(ha.cpu_ms, na.cpu_ms):.2f}x; ledger check: "
          f"{'ok' if not problems else f'{len(problems)} problems'}")
    print(f"RESULT booking_sql_hold={statistics.fmean(hb.statements):.1f} "
          f"booking_sql_no_hold={statistics.fmean(nb.statements):.1f} "
          f"booking_sql_ratio={ratio(hb.statements, nb.statements):.2f} "
          f"booking_cpu_ratio={ratio(hb.cpu_ms, nb.cpu_ms):.2f} "
          f"booking_server_cpu_ratio={server_ratio(hb, nb)} "
          f"booking_p50_ratio={percentile(hb.wall_ms, 50) / percentile(nb.wall_ms, 50):.2f} "
          f"accept_sql_ratio={ratio(ha.statements, na.statements):.2f} "
          f"accept_cpu_ratio={ratio(ha.cpu_ms, na.cpu_ms):.2f} "
          f"path_cpu_ratio={statistics.fmean(path_with) / statistics.fmean(path_without):.2f} "
          f"ledger_ok={int(not problems)}")


if __name__ == "__main__":
    main()
