"""Accounts and worker profiles: registration, login, skills, verification, going online,
and location reports (which feed matching through the worker_skills triggers)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Role, User, Worker, WorkerSkill
from dispatch.domain.commands import AccountIn, PasswordChangeIn, RegisterIn, WorkerProfileIn
from dispatch.domain.errors import Conflict, Unauthenticated, invalid, not_found, refusal
from dispatch.domain.states import Availability, check_availability_transition
from dispatch.services.catalog import bookable_category, leaves_under
from dispatch.services.credentials import (
    hash_password,
    require_verified_phone,
    set_password,
    verify_password,
)
from dispatch.services.dispatching import withdraw_elsewhere


def register(session: Session, data: RegisterIn, role: Role | None = None) -> User:
    """Create the account (and the worker profile for workers) at once, phone counted as
    proven: for the operator's command line (create-admin, seed-demo), who vouches for the
    number. People sign up through `phone_verification.request_signup` instead. Duplicate
    email or phone is a 409 naming the field; nothing is written in that case."""
    return create_account(session, email=data.email, name=data.name, phone=data.phone,
                          role=(role or Role(data.role)).value, locale=data.locale,
                          password_hash=hash_password(data.password))


def create_account(session: Session, *, email: str, name: str, phone: str, role: str,
                   locale: str, password_hash: str) -> User:
    """An account whose phone is proven (or vouched for), with a worker's profile."""
    user = User(email=email, name=name, phone_e164=phone, role=role, locale=locale,
                password_hash=password_hash, phone_verified_at=clock.now())
    session.add(user)
    _flush_unique(session)
    if user.role == Role.WORKER.value:
        session.add(Worker(user_id=user.id))
    session.flush()
    return user


def _flush_unique(session: Session) -> None:
    """Write the account; an email or phone someone else has is a 409 naming the field."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        taken = "email" if "email" in str(exc.orig) else "phone"
        raise refusal(Conflict, "already_registered", taken, f"{taken}.taken") from exc


def update_account(session: Session, user: User, data: AccountIn) -> User:
    """Name, phone and language (the texts and pages follow `locale`)."""
    if data.name is not None:
        user.name = data.name
    if data.phone is not None and data.phone != user.phone_e164:
        user.phone_e164 = data.phone
        user.phone_verified_at = None  # a new number is unproven until it answers a code
    if data.locale is not None:
        user.locale = data.locale
    _flush_unique(session)
    session.commit()
    return user


def change_password(session: Session, user: User, data: PasswordChangeIn) -> User:
    """Knowing the current password is the proof; every token of the account ends."""
    if not verify_password(user, data.current_password):
        raise invalid("current_password", "password.not_current")
    set_password(session, user, data.new_password)
    session.commit()
    return user


def login(session: Session, email: str, password: str) -> User:
    user = session.execute(
        select(User).where(User.email == email.strip().lower())
    ).scalar_one_or_none()
    matches = verify_password(user, password)  # a hash is checked even without a user
    if user is None or not matches:
        raise refusal(Unauthenticated, "bad_credentials", "password", "password.wrong")
    return user


def worker_of(session: Session, user: User, lock: bool = False) -> Worker:
    stmt = select(Worker).where(Worker.user_id == user.id)
    if lock:
        stmt = stmt.with_for_update()
    worker = session.execute(stmt).scalar_one_or_none()
    if worker is None:
        raise not_found("worker profile")
    return worker


def update_profile(session: Session, user: User, data: WorkerProfileIn) -> Worker:
    worker = worker_of(session, user, lock=True)
    if data.travel_mode is not None:
        worker.travel_mode = data.travel_mode
    if data.service_radius_m is not None:
        worker.service_radius_m = data.service_radius_m
    if data.weekly_hours is not None:
        worker.weekly_hours = [h.model_dump() for h in sorted(
            data.weekly_hours, key=lambda h: (h.day, h.start))]
    session.commit()
    return worker


def set_skills(session: Session, user: User, category_ids: list[int]) -> Worker:
    """Replace the worker's skills with the leaves under the given categories. Verification
    already granted for a kept leaf stays; new leaves start unverified."""
    worker = worker_of(session, user, lock=True)
    leaves = leaves_under(session, category_ids)
    keep = {leaf.id for leaf in leaves}
    for skill in list(worker.skills):
        if skill.category_id not in keep:
            worker.skills.remove(skill)
    have = {s.category_id for s in worker.skills}
    for leaf in leaves:
        if leaf.id not in have:
            worker.skills.append(WorkerSkill(category_id=leaf.id, verified=False))
    session.commit()
    return worker


def verify_skill(session: Session, worker_id: int, category_id: int, verified: bool) -> Worker:
    """An operator vouches (or stops vouching) for a worker in one service."""
    bookable_category(session, category_id)
    skill = session.execute(
        select(WorkerSkill).where(WorkerSkill.worker_id == worker_id,
                                  WorkerSkill.category_id == category_id).with_for_update()
    ).scalar_one_or_none()
    if skill is None:
        if session.get(Worker, worker_id) is None:
            raise not_found("worker")
        raise invalid("category_id", "category.not_a_skill")
    skill.verified = verified
    skill.verified_at = clock.now() if verified else None
    session.commit()
    return skill.worker


def set_availability(session: Session, user: User, availability: Availability) -> Worker:
    """Online workers get offers; a busy worker must finish the job before going offline."""
    if availability is Availability.ONLINE:
        require_verified_phone(user)  # offers are texted to it
    worker = worker_of(session, user, lock=True)
    if worker.availability == Availability.BUSY.value:
        raise refusal(Conflict, "worker_busy", "availability", "availability.busy")
    check_availability_transition(worker.availability, availability)
    worker.availability = availability.value
    session.commit()
    if availability is Availability.OFFLINE:
        withdraw_elsewhere(session, user.id, reason="the worker went offline")
    session.refresh(worker)
    return worker
