"""The category tree and the OpenAPI document."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from dispatch.db import db
from dispatch.http.api import bp
from dispatch.http.api.routing import registry
from dispatch.http.api.schemas import CategoryOut, CategoryTreeOut
from dispatch.http.api.shapes import category_prices_out
from dispatch.services.catalog import all_categories


@registry.route(bp, "/categories", "GET", summary="The service category tree",
                response=CategoryTreeOut, roles=None)
def categories() -> CategoryTreeOut:
    nodes: dict[int, CategoryOut] = {}
    roots: list[CategoryOut] = []
    currency = current_app.config["DISPATCH"].currency
    for c in all_categories(db.session):  # ordered by path: parents come first
        node = CategoryOut(id=c.id, slug=c.slug, name=c.name, path=c.path,
                           bookable=c.bookable, children=[],
                           prices=category_prices_out(c, currency) if c.bookable else None)
        nodes[c.id] = node
        parent = nodes.get(c.parent_id) if c.parent_id else None
        (parent.children if parent else roots).append(node)
    return CategoryTreeOut(categories=roots)


@bp.get("/openapi.json")
def openapi() -> Response:
    doc = current_app.extensions.get("dispatch.openapi")
    if doc is None:
        doc = registry.openapi("dispatch API", "1")
        current_app.extensions["dispatch.openapi"] = doc
    return jsonify(doc)
