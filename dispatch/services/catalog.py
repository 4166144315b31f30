"""The service category tree (Home repair > Plumbing > Leak repair ...)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.errors import invalid
from dispatch.models import Category


def all_categories(session: Session) -> list[Category]:
    return list(session.execute(select(Category).order_by(Category.path)).scalars())


def bookable_category(session: Session, category_id: int, field: str = "category_id") -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise invalid(field, f"no category with id {category_id}")
    if not category.bookable:
        raise invalid(field, f"'{category.path}' is a group; choose one of its services")
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
            raise invalid(f"{field}.{index}", f"no category with id {cid}")
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
