"""Matching benchmark: the full candidate query against the bare KNN floor, same table, same run.

Seeds N online workers (2 skills each out of 20 categories, all verified, fresh positions)
over a 50 km x 50 km metro into its own database, then runs the real `geo.find_candidates`
and the floor (`ORDER BY location <-> point LIMIT 10` on the same partial index) on the same
random points, interleaved, through the same pooled connection.

    python bench/match.py [--workers 100000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url

from dispatch.infra.config import Settings, _sqlalchemy_url
from dispatch.services import ledger
from geo.candidates import (
    CANDIDATE_SQL,
    MATCH_INDEX_NAME,
    MatchRequest,
    MatchWeights,
    find_candidates,
)
from geo.eta import EtaModel

CENTER = (37.7749, -122.4194)
HALF_SIDE_M = 25_000
CATEGORIES = 20

FLOOR_SQL = text(
    """
SELECT s.worker_id
FROM worker_skills s
WHERE s.category_id = CAST(:category_id AS integer) AND s.available AND s.verified
ORDER BY s.location <-> ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography
LIMIT 10
"""
)


def bench_url() -> str:
    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=f"{base.database}_bench").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (u.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{u.database}"')


def migrate(url: str) -> None:
    from flask_migrate import upgrade

    from dispatch import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()


def seed(conn: Connection, workers: int) -> list[int]:
    """(Re)build the bench population unless it is already there; returns category ids."""
    conn.execute(text(
        "INSERT INTO categories (slug, name, path, bookable) SELECT 'bench-' || i, "
        "'Bench ' || i, 'bench/' || i, true FROM generate_series(1, :n) i "
        "ON CONFLICT (slug) DO NOTHING"), {"n": CATEGORIES})
    cats = [r[0] for r in conn.execute(text(
        "SELECT id FROM categories WHERE slug LIKE 'bench-%' ORDER BY id"))]
    have = conn.execute(text("SELECT count(*) FROM workers")).scalar_one()
    if have == workers:
        print(f"reusing {have} seeded workers; refreshing their positions' timestamps")
        conn.execute(text("UPDATE worker_skills SET location_at = now() - "
                          "(random() * interval '5 minutes')"))
        conn.commit()
        return cats
    print(f"seeding {workers} workers ...", flush=True)
    started = time.perf_counter()
    conn.execute(text(ledger.ALLOW_TRUNCATE))  # the CASCADE reaches the ledger's tables
    conn.execute(text("TRUNCATE offers, job_events, jobs, worker_skills, workers, api_tokens, "
                      "users RESTART IDENTITY CASCADE"))
    dlat = HALF_SIDE_M / 111_320
    dlng = HALF_SIDE_M / (111_320 * math.cos(math.radians(CENTER[0])))
    conn.execute(text(
        """
INSERT INTO users (id, email, name, phone_e164, role, password_hash)
SELECT i, 'w' || i || '@bench.test', 'Worker ' || i, '+1' || (2000000000 + i)::text,
       'worker', 'x'
FROM generate_series(1, :n) i
"""), {"n": workers})
    conn.execute(text(
        """
INSERT INTO workers (user_id, travel_mode, service_radius_m, availability, location,
                     location_accuracy_m, location_at)
SELECT i, (ARRAY['walk', 'bike', 'car', 'car'])[1 + (i % 4)], 15000 + (i % 3) * 5000, 'online',
       ST_SetSRID(ST_MakePoint(:lng + (random() * 2 - 1) * :dlng,
                               :lat + (random() * 2 - 1) * :dlat), 4326)::geography,
       10, now() - random() * interval '5 minutes'
FROM generate_series(1, :n) i
"""), {"n": workers, "lat": CENTER[0], "lng": CENTER[1], "dlat": dlat, "dlng": dlng})
    # Bulk path: copy the worker columns in one join instead of the per-row trigger.
    conn.execute(text("ALTER TABLE worker_skills DISABLE TRIGGER worker_skills_copy_worker"))
    conn.execute(text(
        """
INSERT INTO worker_skills (worker_id, category_id, verified, available, location, location_at)
SELECT w.user_id, c.cat, true, true, w.location, w.location_at
FROM workers w
CROSS JOIN LATERAL (VALUES
    ((:cats)[1 + (w.user_id % :k)]),
    ((:cats)[1 + ((w.user_id / :k + w.user_id) % :k + 1 + w.user_id % :k) % :k])
) AS c(cat)
ON CONFLICT DO NOTHING
"""), {"cats": cats, "k": CATEGORIES})
    conn.execute(text("ALTER TABLE worker_skills ENABLE TRIGGER worker_skills_copy_worker"))
    conn.commit()
    conn.execute(text("ANALYZE"))
    conn.commit()
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
    return cats


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    url = bench_url()
    ensure_database(url)
    migrate(url)
    engine = create_engine(url, pool_size=1)
    rng = random.Random(args.seed)
    settings = Settings.from_env()
    eta = EtaModel.from_setting(settings.travel_speeds_kmh, settings.circuity,
                                settings.startup_s)
    with engine.connect() as conn:
        cats = seed(conn, args.workers)
        skills = conn.execute(text("SELECT count(*) FROM worker_skills")).scalar_one()
        dlat = HALF_SIDE_M / 111_320
        dlng = HALF_SIDE_M / (111_320 * math.cos(math.radians(CENTER[0])))
        points = [(CENTER[0] + rng.uniform(-dlat, dlat), CENTER[1] + rng.uniform(-dlng, dlng),
                   rng.choice(cats)) for _ in range(args.queries)]

        def real(lat: float, lng: float, cat: int) -> int:
            now = datetime.now(UTC)
            found = find_candidates(conn, MatchRequest(
                category_id=cat, lat=lat, lng=lng, now=now,
                deadline=now + timedelta(minutes=settings.promise_minutes), eta=eta,
                max_location_age=timedelta(seconds=settings.location_max_age_s),
                weights=MatchWeights(settings.reputation_weight, settings.fairness_weight),
                limit=settings.offer_wave_size), pool=settings.knn_pool)
            return len(found.candidates)

        def floor(lat: float, lng: float, cat: int) -> int:
            return len(conn.execute(FLOOR_SQL, {"category_id": cat, "lat": lat,
                                                "lng": lng}).all())

        for lat, lng, cat in points[:200]:  # warm: PostGIS library load, caches, plans
            real(lat, lng, cat)
            floor(lat, lng, cat)
        real_ms: list[float] = []
        floor_ms: list[float] = []
        found_counts: list[int] = []
        for i, (lat, lng, cat) in enumerate(points):
            order = [(real, real_ms), (floor, floor_ms)]
            if i % 2:
                order.reverse()
            for fn, sink in order:
                t0 = time.perf_counter()
                n = fn(lat, lng, cat)
                sink.append((time.perf_counter() - t0) * 1000)
                if fn is real:
                    found_counts.append(n)

        lat, lng, cat = points[0]
        now = datetime.now(UTC)
        params = MatchRequest(
            category_id=cat, lat=lat, lng=lng, now=now,
            deadline=now + timedelta(hours=2), eta=eta,
            max_location_age=timedelta(seconds=settings.location_max_age_s),
        ).params(pool=settings.knn_pool)
        plan = [r[0] for r in conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " +
                                                CANDIDATE_SQL.text), params)]
        conn.rollback()

    uses_index = any(f"Index Scan using {MATCH_INDEX_NAME}" in line for line in plan)
    p50, p99 = percentile(real_ms, 50), percentile(real_ms, 99)
    f50, f99 = percentile(floor_ms, 50), percentile(floor_ms, 99)
    print()
    print(f"workers={args.workers} worker_skills rows={skills} categories={CATEGORIES} "
          f"queries={args.queries} metro={2 * HALF_SIDE_M // 1000} km square")
    print(f"{'query':<34}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    print(f"{'full candidate query (find_candidates)':<34}{p50:>10.3f}{p99:>10.3f}"
          f"{statistics.fmean(real_ms):>10.3f}")
    print(f"{'floor: bare KNN LIMIT 10':<34}{f50:>10.3f}{f99:>10.3f}"
          f"{statistics.fmean(floor_ms):>10.3f}")
    print(f"ratio p50={p50 / f50:.2f}x p99={p99 / f99:.2f}x  (target: p99 within 3x and < 5 ms)")
    print(f"candidates found per query: median {statistics.median(found_counts):.0f}, "
          f"none in {sum(1 for c in found_counts if c == 0)} of {len(found_counts)}")
    print(f"plan uses {MATCH_INDEX_NAME}: {uses_index}")
    for line in plan:
        if "Index Scan" in line or "Execution Time" in line:
            print("  " + line.strip())
    print(f"RESULT workers={args.workers} p50_ms={p50:.3f} p99_ms={p99:.3f} "
          f"floor_p99_ms={f99:.3f} ratio_p99={p99 / f99:.2f}")


if __name__ == "__main__":
    main()
