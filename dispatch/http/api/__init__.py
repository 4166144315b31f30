"""The JSON API, version 1. Views parse, call a service, shape the answer; nothing else."""

from typing import Any

from flask import Blueprint
from werkzeug.routing import BaseConverter, Map


class IdConverter(BaseConverter):
    """A path id: any run of ASCII digits matches, and the view refuses one outside the
    column's range with a 404 naming it (`routing.ApiRegistry`). Werkzeug's `int(max=)`
    refuses it while matching instead, and then answers 405 wherever the same path has a
    route for another method (`DELETE /units/99999999999999999999` said "method not
    allowed")."""

    regex = r"[0-9]+"
    part_isolating = True

    def __init__(self, url_map: Map, min: int = 1, max: int | None = None) -> None:
        super().__init__(url_map)
        self.min, self.max = min, max

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


bp = Blueprint("api", __name__, url_prefix="/api/v1")
# First of the blueprint's deferred set-up, so the routes below find the converter.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("id", IdConverter))


def blueprint() -> Blueprint:
    """The API with its views attached. The view modules are imported here, not at package
    import, so a service can use `dispatch.http.api.schemas` without pulling in every view (and,
    through them, every other service): an RQ worker imports one service at a time."""
    from dispatch.http.api import (  # noqa: F401
        accounts,
        admin,
        approvals,
        batches,
        invitations,
        jobs,
        meta,
        offers,
        payouts,
        places,
        portfolio,
        prices,
        workers,
    )

    return bp
