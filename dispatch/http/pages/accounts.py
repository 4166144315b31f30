"""Sign up, log in, log out."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from pydantic import ValidationError
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from dispatch.db import db
from dispatch.domain.commands import RegisterIn
from dispatch.domain.errors import DomainError, from_validation_error
from dispatch.http.api.schemas import LoginIn
from dispatch.http.pages import bp
from dispatch.services import accounts


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
            form.form_errors.append(problem.problem)


def _safe_next() -> str | None:
    target = request.args.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else None
