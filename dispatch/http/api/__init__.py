"""The JSON API, version 1. Views parse, call a service, shape the answer; nothing else."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")


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
        invoices,
        jobs,
        meta,
        offers,
        payouts,
        places,
        portfolio,
        prices,
        statements,
        workers,
    )

    return bp
