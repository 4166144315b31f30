"""Sign up, log in, log out; forgot and reset a password; everyone's own profile (name,
phone, language, password)."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from dispatch.db import db
from dispatch.db.models import User
from dispatch.domain.commands import (
    AccountIn,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    PhoneCodeIn,
    RegisterIn,
    SignupConfirmIn,
)
from dispatch.domain.errors import DomainError, from_validation_error
from dispatch.http.api.accounts import CODE_SENT, RESET_REQUESTED, SIGNUP_CODE_SENT
from dispatch.http.api.schemas import LoginIn
from dispatch.http.auth import end_this_login_session, keep_session_after_password_change
from dispatch.http.pages import bp
from dispatch.services import accounts, credentials, password_reset, phone_verification

LANGUAGES = [SelectChoice("en", "English"), SelectChoice("zh-CN", "简体中文")]
NEW_PASSWORD = "New password (10 characters or more)"
# The login session's note of the phone a sign-up named and the ticket it was answered with.
SIGNUP_PHONE, SIGNUP_TICKET = "signup_phone", "signup_ticket"


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
    locale = SelectField("Language", choices=LANGUAGES)


class CodeForm(FlaskForm):
    code = StringField("Code from the text", validators=[DataRequired(), Length(max=10)])


class ForgotForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ResetForm(FlaskForm):
    new_password = PasswordField(NEW_PASSWORD,
                                 validators=[DataRequired(), Length(min=10, max=128)])


class AccountForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    phone = StringField("Mobile phone", validators=[DataRequired(), Length(max=32)])
    locale = SelectField("Language", choices=LANGUAGES)


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired(), Length(max=128)])
    new_password = PasswordField(NEW_PASSWORD,
                                 validators=[DataRequired(), Length(min=10, max=128)])


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
            ticket = phone_verification.request_signup(db.session, data)
        except ValidationError as exc:
            _attach(form, from_validation_error(exc))
        except DomainError as exc:
            _attach(form, exc)
        else:
            # The same next step whether or not the email or phone has an account.
            session[SIGNUP_PHONE] = data.phone
            session[SIGNUP_TICKET] = ticket
            flash(SIGNUP_CODE_SENT)
            return redirect(url_for("web.register_confirm"))
    status = 422 if request.method == "POST" else 200
    return render_template("register.html", form=form), status  # type: ignore[return-value]


@bp.route("/register/confirm", methods=["GET", "POST"])
def register_confirm() -> str | Response:
    """Enter the texted code: the account is created and logged in."""
    phone, ticket = session.get(SIGNUP_PHONE), session.get(SIGNUP_TICKET)
    if not phone or not ticket:
        return redirect(url_for("web.register"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            data = SignupConfirmIn(ticket=ticket, code=form.code.data or "")
            user = phone_verification.finish_signup(db.session, data.ticket, data.code)
            db.session.commit()
        except ValidationError as exc:
            _attach(form, from_validation_error(exc))
        except DomainError as exc:
            _attach(form, exc)
        else:
            session.pop(SIGNUP_PHONE, None)
            session.pop(SIGNUP_TICKET, None)
            login_user(user)
            flash("Welcome to dispatch.")
            return redirect(url_for("web.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("register_confirm.html", form=form,  # type: ignore[return-value]
                           phone=phone), status


@bp.post("/logout")
@login_required
def logout() -> Response:
    end_this_login_session()
    logout_user()
    return redirect(url_for("web.index"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere() -> Response:
    """A lost phone or a shared computer: every login session and every bearer token of
    the account ends, and every socket of theirs closes."""
    credentials.end_every_session(db.session, current_user.id)
    db.session.commit()
    logout_user()
    flash("You are logged out on every device.")
    return redirect(url_for("web.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password() -> str | Response:
    """The same answer whether or not the account exists (nobody learns who has one)."""
    form = ForgotForm()
    if form.validate_on_submit() and _carried_out(form, lambda: password_reset.request_reset(
            db.session, PasswordResetRequestIn(email=form.email.data or "").email)):
        flash(RESET_REQUESTED)
        return redirect(url_for("web.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("forgot_password.html", form=form), status  # type: ignore[return-value]


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> str | Response:
    form = ResetForm()
    try:
        password_reset.user_for_token(db.session, token)
    except DomainError:
        return render_template("reset_password.html", form=None), 410  # type: ignore[return-value]
    if form.validate_on_submit() and _carried_out(form, lambda: _reset(token, form)):
        logout_user()
        flash("Your password is changed. Log in with the new one.")
        return redirect(url_for("web.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("reset_password.html", form=form), status  # type: ignore[return-value]


def _reset(token: str, form: ResetForm) -> None:
    """The page's new password passes the same checks as the API's (PasswordResetIn)."""
    data = PasswordResetIn(token=token, new_password=form.new_password.data or "")
    password_reset.reset_password(db.session, data.token, data.new_password)


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> str | Response:
    user = db.session.get(User, current_user.id)
    assert user is not None
    # Two forms on one page; the button pressed says which one was sent.
    sent = request.form.get("form") if request.method == "POST" else None
    details = AccountForm(prefix="account")
    password = PasswordForm(prefix="password")
    code = CodeForm(prefix="phone")
    if sent == "phone_code" and _carried_out(
            code, lambda: phone_verification.send_account_code(db.session, user)):
        flash(CODE_SENT)
        return redirect(url_for("web.profile", code_sent=1))
    if sent == "phone_verify" and code.validate_on_submit() and _carried_out(
            code, lambda: phone_verification.verify_account_phone(
                db.session, user, PhoneCodeIn(code=code.code.data or "").code)):
        flash("Your phone number is confirmed.")
        return redirect(url_for("web.profile"))
    if sent != "account":
        details.name.data, details.phone.data = user.name, user.phone_e164
        details.locale.data = user.locale
    if sent == "account" and details.validate_on_submit() and _carried_out(
            details, lambda: accounts.update_account(db.session, user, AccountIn(
                name=details.name.data, phone=details.phone.data, locale=details.locale.data))):
        flash("Your details are saved.")
        return redirect(url_for("web.profile"))
    if sent == "password" and password.validate_on_submit() and _carried_out(
            password, lambda: accounts.change_password(db.session, user, PasswordChangeIn(
                current_password=password.current_password.data or "",
                new_password=password.new_password.data or ""))):
        keep_session_after_password_change(user)
        flash("Your password is changed. Other devices are logged out.")
        return redirect(url_for("web.profile"))
    status = 422 if request.method == "POST" else 200
    return render_template("profile.html", details=details, password=password,  # type: ignore[return-value]
                           code=code, user=user,
                           code_sent=sent == "phone_verify" or "code_sent" in request.args
                           ), status


def _carried_out(form: FlaskForm, action: Callable[[], object]) -> bool:
    """Run what the form asks; a refusal is shown on the form, by field."""
    try:
        action()
    except ValidationError as exc:
        _attach(form, from_validation_error(exc))
    except DomainError as exc:
        _attach(form, exc)
    else:
        return True
    return False


def _attach(form: FlaskForm, error: DomainError) -> None:
    for problem in error.fields:
        field = getattr(form, problem.field, None)
        if field is not None:
            field.errors = [*field.errors, problem.problem]
        else:
            form.form_errors.append(problem.problem)


def _safe_next() -> str | None:
    """Where to go after logging in: only a path of this app's own pages, on this host.
    Anything else (`//evil.example/`, `/%09/evil.example/` which browsers read as the same,
    backslashes, control characters that cannot go in a header, a path no route serves) is
    ignored, so a link cannot send a freshly logged-in user to someone else's site."""
    target = request.args.get("next", "")
    if not target.startswith("/") or _UNSAFE_IN_NEXT.search(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("//"):
        return None
    try:
        current_app.url_map.bind_to_environ(request.environ).match(parts.path, method="GET")
    except HTTPException:  # NotFound, MethodNotAllowed, RequestRedirect (a slash added)
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


# Backslashes (browsers read them as slashes), whitespace and control characters (browsers
# drop tabs and newlines inside URLs; CR/LF cannot be sent in a Location header at all).
_UNSAFE_IN_NEXT = re.compile(r"[\\\s\x00-\x1f\x7f]")
