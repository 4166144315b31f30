"""Server-rendered pages: sign up and log in, and the three working pages (book and follow a
job, work a shift on a phone, watch every job as a property manager). Pages talk to the same
JSON API and Socket.IO server as any client, with the login session and its CSRF token."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from pydantic import ValidationError
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from dispatch.db import db
from dispatch.db.models import Role, User
from dispatch.domain.commands import RegisterIn
from dispatch.domain.errors import DomainError, from_validation_error
from dispatch.domain.states import JobStatus, client_state_lists
from dispatch.http.api.schemas import LoginIn
from dispatch.http.api.shapes import job_out
from dispatch.infra.config import ROOT
from dispatch.services import accounts, contact
from dispatch.services.catalog import bookable_groups
from dispatch.services.jobs import visible_job

bp = Blueprint("web", __name__)


@bp.app_context_processor
def _page_settings() -> dict[str, object]:
    s = current_app.config["DISPATCH"]
    return {"map_config": {"tileUrl": s.tile_url, "attribution": s.tile_attribution},
            "state_lists": client_state_lists()}


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=128)])


class RegisterForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    phone = StringField("Mobile phone", validators=[DataRequired(), Length(max=32)])
    password = PasswordField("Password (10 characters or more)",
                             validators=[DataRequired(), Length(min=10, max=128)])
    role = SelectField("I want to", choices=[SelectChoice("resident", "Book help"),
                                             SelectChoice("worker", "Work jobs"),
                                             SelectChoice("property_manager",
                                                          "Manage properties")])
    locale = SelectField("Language", choices=[SelectChoice("en", "English"),
                                              SelectChoice("zh-CN", "简体中文")])


@bp.get("/")
def index() -> str | Response:
    if current_user.is_authenticated:
        home = {Role.WORKER: "web.work", Role.PROPERTY_MANAGER: "web.manage"}.get(
            Role(current_user.role), "web.book")
        return redirect(url_for(home))
    return render_template("index.html")


def _require(*roles: Role) -> None:
    if Role(current_user.role) not in roles and Role(current_user.role) is not Role.ADMIN:
        abort(403)


@bp.get("/book")
@login_required
def book() -> str:
    _require(Role.RESIDENT, Role.PROPERTY_MANAGER)
    return render_template("book.html", categories=bookable_groups(db.session))


@bp.get("/jobs/<int(min=1, max=9223372036854775807):job_id>")
@login_required
def job_page(job_id: int) -> str:
    user = db.session.get(User, current_user.id)
    assert user is not None
    try:
        job = visible_job(db.session, user, job_id)
    except DomainError:
        abort(404)  # strangers learn nothing, not even that the job exists
    # What this viewer may see (a worker sees the exact place only while the job is active).
    number = contact.masked_number(db.session, job) if Role(user.role) is not Role.ADMIN else None
    return render_template("job.html", job=job, view=job_out(job, user, number))


@bp.get("/work")
@login_required
def work() -> str:
    _require(Role.WORKER)
    return render_template("work.html")


@bp.get("/manage")
@login_required
def manage() -> str:
    _require(Role.PROPERTY_MANAGER, Role.RESIDENT)
    return render_template("manage.html", statuses=[s.value for s in JobStatus])


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    form = LoginForm()
    if form.validate_on_submit():
        try:
            data = LoginIn(email=form.email.data or "", password=form.password.data or "")
            user = accounts.login(db.session, data.email, data.password)
        except ValidationError as exc:
            _attach(form, from_validation_error(exc))
        except DomainError as exc:
            form.password.errors = [exc.message]
        else:
            login_user(user)
            return redirect(_safe_next() or url_for("web.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("login.html", form=form), status  # type: ignore[return-value]


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response:
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            data = RegisterIn(email=form.email.data, password=form.password.data,
                              name=form.name.data, phone=form.phone.data, role=form.role.data,
                              locale=form.locale.data)
            user = accounts.register(db.session, data)
            db.session.commit()
        except ValidationError as exc:
            _attach(form, from_validation_error(exc))
        except DomainError as exc:
            _attach(form, exc)
        else:
            login_user(user)
            flash("Welcome to dispatch.")
            return redirect(url_for("web.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("register.html", form=form), status  # type: ignore[return-value]


@bp.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    return redirect(url_for("web.index"))


def _attach(form: FlaskForm, error: DomainError) -> None:
    for problem in error.fields:
        field = getattr(form, problem.field, None)
        if field is not None:
            field.errors = [*field.errors, problem.problem]
        else:
            form.form_errors.append(f"{problem.field}: {problem.problem}")


def _safe_next() -> str | None:
    target = request.args.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else None

