"""Server-rendered pages, one module per area: sign up and log in (`accounts`), book and
follow a job (`jobs`), work a shift on a phone (`work`), watch every job as a property
manager (`manage`), land as an operator (`admin`). Pages talk to the same JSON API and
Socket.IO server as any client, with the login session and its CSRF token."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response

from dispatch.db.models import Role
from dispatch.domain.errors import wrong_role
from dispatch.domain.states import client_state_lists
from dispatch.infra.config import ROOT

bp = Blueprint("web", __name__)


def blueprint() -> Blueprint:
    """The pages with their views attached (each area's module registers its routes)."""
    from dispatch.http.pages import accounts, admin, jobs, manage, setup, work  # noqa: F401

    return bp


@bp.app_context_processor
def _page_settings() -> dict[str, object]:
    s = current_app.config["DISPATCH"]
    return {"map_config": {"tileUrl": s.tile_url, "attribution": s.tile_attribution},
            "state_lists": client_state_lists(), "service_time_zone": s.service_timezone}


def require(*roles: Role) -> None:
    """403 unless the logged-in user has one of these roles (operators see every page); the
    error page says whom the page is for and who they are."""
    if Role(current_user.role) not in roles and Role(current_user.role) is not Role.ADMIN:
        raise wrong_role([r.value for r in roles], current_user.role, page=True)


@bp.get("/")
def index() -> str | Response:
    if current_user.is_authenticated:
        home = {Role.WORKER: "web.work", Role.PROPERTY_MANAGER: "web.manage",
                Role.ADMIN: "web.admin_home"}.get(
            Role(current_user.role), "web.book")
        return redirect(url_for(home))
    return render_template("index.html")


# Front-end libraries come from npm (node_modules); only their built files are served.
VENDOR = {
    "leaflet": ROOT / "node_modules" / "leaflet" / "dist",
    "socket.io-client": ROOT / "node_modules" / "socket.io-client" / "dist",
}


@bp.get("/vendor/<lib>/<path:filename>")
def vendor(lib: str, filename: str) -> Response:
    folder = VENDOR.get(lib)
    if folder is None:
        abort(404)
    return send_from_directory(folder, filename, max_age=86400)
