"""The JSON API, version 1. Views parse, call a service, shape the answer; nothing else."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from dispatch.api import (  # noqa: E402, F401
    accounts,
    admin,
    batches,
    jobs,
    meta,
    offers,
    portfolio,
    workers,
)
