"""The candidate search in `geo`: each eligibility rule, the ranking, the plan."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import text

from dispatch.db import clock, db
from dispatch.services.dispatching import eta_model, search_candidates
from geo.candidates import CANDIDATE_SQL, MATCH_INDEX_NAME, MatchRequest
from geo.eta import TravelMode
from tests.helpers import CENTER, Factory, offset

LEAK = "leak-repair"


def search(app: Flask, category_id: int, *, lat: float = CENTER[0], lng: float = CENTER[1],
           hours: float = 2, excluded: list[int] | None = None, limit: int = 10):
    with app.app_context():
        now = clock.now()
        return search_candidates(db.session, category_id=category_id, lat=lat, lng=lng,
                                 now=now, deadline=now + timedelta(hours=hours),
                                 excluded_worker_ids=excluded or [], limit=limit)


def ids(result) -> list[int]:
    return [c.worker_id for c in result.candidates]


def test_only_eligible_workers_are_candidates(app: Flask, make: Factory) -> None:
    near = offset(*CENTER, north_m=800)
    good, _ = make.worker(lat=near[0], lng=near[1])
    make.worker(lat=near[0], lng=near[1], availability="offline")
    make.worker(lat=near[0], lng=near[1], availability="busy")
    make.worker(lat=near[0], lng=near[1], verified=False)
    make.worker(lat=near[0], lng=near[1], skills=("dog-walking",))
    make.worker(lat=near[0], lng=near[1], seen_ago=timedelta(hours=1))  # stale position
    far = offset(*CENTER, north_m=9000)
    make.worker(lat=far[0], lng=far[1], radius_m=5000)  # outside their own radius
    assert ids(search(app, make.category(LEAK))) == [good]


def test_worker_who_cannot_arrive_in_time_is_not_a_candidate(app: Flask, make: Factory) -> None:
    # 9 km straight at 4.7 km/h x 1.3 circuity is about 2.5 h on foot: too late for 2 h.
    far = offset(*CENTER, east_m=9000)
    walker, _ = make.worker(lat=far[0], lng=far[1], travel_mode="walk", radius_m=20000)
    result = search(app, make.category(LEAK))
    assert result.candidates == []
    assert result.earliest_arrival is not None
    with app.app_context():
        expected = eta_model(app.config["DISPATCH"]).eta_seconds(9000, TravelMode.WALK)
        late = (result.earliest_arrival - clock.now()).total_seconds()
    assert abs(late - expected) < 0.01 * expected
    # With a longer promise the same walker qualifies.
    assert ids(search(app, make.category(LEAK), hours=3)) == [walker]


def test_ranked_by_eta_not_distance(app: Flask, make: Factory) -> None:
    walk_pt = offset(*CENTER, north_m=1500)
    car_pt = offset(*CENTER, east_m=3000)
    walker, _ = make.worker(lat=walk_pt[0], lng=walk_pt[1], travel_mode="walk")
    driver, _ = make.worker(lat=car_pt[0], lng=car_pt[1], travel_mode="car")
    result = search(app, make.category(LEAK))
    assert ids(result) == [driver, walker]
    assert result.candidates[0].eta_s < result.candidates[1].eta_s
    assert result.candidates[0].distance_m > result.candidates[1].distance_m


def test_excluded_workers_are_skipped(app: Flask, make: Factory) -> None:
    a, _ = make.worker()
    b, _ = make.worker(lat=offset(*CENTER, north_m=500)[0])
    assert ids(search(app, make.category(LEAK), excluded=[a])) == [b]


def test_pool_grows_when_nearest_workers_are_all_ineligible(app: Flask, make: Factory,
                                                          settings) -> None:
    from tests.helpers import set_settings

    set_settings(app, knn_pool=4)
    for _ in range(6):  # nearest six have stale positions and fill a pool of four
        make.worker(seen_ago=timedelta(hours=2))
    further = offset(*CENTER, north_m=4000)
    fresh, _ = make.worker(lat=further[0], lng=further[1])
    assert ids(search(app, make.category(LEAK))) == [fresh]


def test_location_copies_follow_the_worker(app: Flask, make: Factory) -> None:
    """The match index is kept by triggers: going offline or moving shows up at once."""
    worker_id, _ = make.worker()
    with app.app_context():
        db.session.execute(text("UPDATE workers SET availability = 'offline' "
                                "WHERE user_id = :w"), {"w": worker_id})
        db.session.commit()
    assert search(app, make.category(LEAK)).candidates == []
    with app.app_context():
        db.session.execute(text(
            "UPDATE workers SET availability = 'online', location_at = now(), location = "
            "ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography WHERE user_id = :w"),
            {"w": worker_id, "lat": CENTER[0] + 0.01, "lng": CENTER[1]})
        db.session.commit()
    [candidate] = search(app, make.category(LEAK)).candidates
    assert 1000 < candidate.distance_m < 1200


def test_match_query_uses_the_gist_index(app: Flask, make: Factory) -> None:
    """EXPLAIN the exact statement the code sends, with its real parameter types."""
    for i in range(30):
        make.worker(lat=offset(*CENTER, north_m=100 * i)[0])
    with app.app_context():
        db.session.execute(text("ANALYZE worker_skills"))
        now = clock.now()
        s = app.config["DISPATCH"]
        params = MatchRequest(
            category_id=make.category(LEAK), lat=CENTER[0], lng=CENTER[1], now=now,
            deadline=now + timedelta(hours=2), eta=eta_model(s),
            max_location_age=timedelta(minutes=10)).params(pool=64)
        db.session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny table: force choice
        plan = "\n".join(r[0] for r in db.session.execute(
            text("EXPLAIN " + CANDIDATE_SQL.text), params))
        db.session.rollback()
    assert f"Index Scan using {MATCH_INDEX_NAME}" in plan
    assert "Order By: (location <-> " in plan, plan


def test_match_rows_take_a_new_position_only_beyond_25_m(app: Flask, make: Factory) -> None:
    """Small moves keep the indexed position (an in-place update, no index write); the
    freshness always follows the newest fix, and the workers row keeps it exactly."""
    from tests.helpers import sql

    worker_id, _ = make.worker(lat=CENTER[0], lng=CENTER[1])

    def move(north_m: float) -> tuple[float, float]:
        lat, lng = offset(*CENTER, north_m=north_m)
        sql(app, "UPDATE workers SET location = ST_SetSRID(ST_MakePoint(:lng, :lat), 4326),"
                 " location_at = now() + make_interval(secs => :n) WHERE user_id = :w",
            lat=lat, lng=lng, w=worker_id, n=north_m)
        row = sql(app, "SELECT ST_Distance(s.location, w.location) AS lag_m, "
                       "s.location_at = w.location_at AS fresh, "
                       "ST_Distance(s.location, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::"
                       "geography) AS off_m FROM worker_skills s JOIN workers w "
                       "ON w.user_id = s.worker_id WHERE s.worker_id = :w",
                  lat=CENTER[0], lng=CENTER[1], w=worker_id)[0]
        assert row.fresh
        return row.lag_m, row.off_m

    lag, at = move(10)
    assert 9 < lag < 11 and at < 0.01  # 10 m: the match row stays where it was
    lag, at = move(24)
    assert 23 < lag < 25 and at < 0.01
    lag, at = move(40)
    assert lag < 0.01 and 39 < at < 41  # beyond 25 m: it moves
