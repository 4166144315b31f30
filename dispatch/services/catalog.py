"""The service category tree (Home repair > Plumbing > Leak repair ...)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Category
from dispatch.domain.errors import invalid
from dispatch.domain.states import DONE_STATUSES, sql_in
from dispatch.infra.redis import redis_connection

# A category's time on site is learned from at least this many of its jobs completed within
# the window; with fewer, the figure it has (seeded, or learned before) stands.
LEARN_MIN_JOBS = 20
LEARN_WINDOW = timedelta(days=30)
LEARN_EVERY_S = 3600
_LEARNED_KEY = "dispatch:typical-minutes:learned"

_LEARN_SQL = text(f"""
UPDATE categories c SET typical_minutes = d.minutes
  FROM (SELECT j.category_id, count(*) AS n,
               CAST(GREATEST(5, LEAST(480, round(percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY EXTRACT(EPOCH FROM j.completed_at - j.arrived_at) / 60))))
                    AS integer) AS minutes
          FROM jobs j
         WHERE j.completed_at >= :since AND j.arrived_at IS NOT NULL
           AND j.status IN {sql_in(DONE_STATUSES)}
           AND j.completed_at > j.arrived_at
         GROUP BY j.category_id) d
 WHERE c.id = d.category_id AND d.n >= :min_jobs AND c.typical_minutes <> d.minutes
RETURNING c.slug, c.typical_minutes
""")


def learn_typical_minutes(session: Session, now: datetime,
                          min_jobs: int = LEARN_MIN_JOBS) -> dict[str, int]:
    """Queueing a job behind a busy worker counts on when their job ends: the category's
    typical time on site. The seeded figures are guesses; this makes each the median time
    from arrival to completion of the category's recent jobs in this city. Returns what
    changed (slug -> minutes)."""
    rows = session.execute(_LEARN_SQL, {"since": now - LEARN_WINDOW,
                                        "min_jobs": min_jobs}).all()
    session.commit()
    return {r.slug: r.typical_minutes for r in rows}


def sweep(session: Session) -> dict[str, int]:
    """The sweeper's hourly relearning; one sweeper process does it per hour (a Redis claim)."""
    redis = redis_connection()
    if not redis.set(_LEARNED_KEY, 1, nx=True, ex=LEARN_EVERY_S):
        return {}
    try:
        return learn_typical_minutes(session, clock.now())
    except Exception:
        redis.delete(_LEARNED_KEY)  # the next sweep tries again, not the next hour
        raise


def all_categories(session: Session) -> list[Category]:
    return list(session.execute(select(Category).order_by(Category.path)).scalars())


def bookable_category(session: Session, category_id: int, field: str = "category_id") -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise invalid(field, "category.unknown", category_id=category_id)
    if not category.bookable:
        raise invalid(field, "category.group", path=category.path)
    return category


def leaves_under(session: Session, category_ids: Iterable[int],
                 field: str = "category_ids") -> list[Category]:
    """Bookable categories at or below the given ones: a skill in a branch covers its leaves."""
    cats = all_categories(session)
    by_id = {c.id: c for c in cats}
    leaves: dict[int, Category] = {}
    for index, cid in enumerate(category_ids):
        root = by_id.get(cid)
        if root is None:
            raise invalid(f"{field}.{index}", "category.unknown", category_id=cid)
        prefix = root.path + "/"
        for c in cats:
            if c.bookable and (c.id == root.id or c.path.startswith(prefix)):
                leaves[c.id] = c
    return sorted(leaves.values(), key=lambda c: c.path)


def bookable_groups(session: Session) -> list[tuple[str, list[Category]]]:
    """Bookable services grouped under their parent's name, for a category picker."""
    cats = all_categories(session)
    by_id = {c.id: c for c in cats}
    groups: dict[str, list[Category]] = {}
    for c in cats:
        if c.bookable:
            parent = by_id.get(c.parent_id) if c.parent_id else None
            groups.setdefault(parent.name if parent else "Other", []).append(c)
    return sorted(groups.items())
