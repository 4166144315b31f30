"""The sweeper process: the net under RQ timers, after-commit actions and the web processes'
position writers. Every step finds its own work in the database, so whatever a lost timer,
a crashed process or a Redis restart dropped is picked up here within one interval."""

from __future__ import annotations

import time
from collections.abc import Callable

import click
from sqlalchemy.orm import Session, scoped_session

from dispatch.services import (
    alerts,
    batches,
    catalog,
    confirmation,
    contact,
    credentials,
    dispatching,
    hand_back,
    milestones,
    notify,
    org_hooks,
    payments,
    payouts,
    phone_verification,
    tracking,
)


def sweep_once(session: Session) -> int:
    """One round; returns how many jobs the offer cascade moved on."""
    touched = dispatching.sweep(session)
    tracking.flush_fixes(session)  # positions no web process has written (one stopped)
    tracking.sweep(session)  # active-job caches a crashed process left stale
    touched += hand_back.sweep_no_shows(session)  # after the flush: the freshest fixes
    contact.sweep(session)  # masked sessions to close, or to open again
    notify.sweep(session)  # texts whose queue entry was lost
    batches.sweep(session)  # batches nobody is processing
    org_hooks.sweep(session)  # webhook deliveries nobody is sending
    alerts.sweep(session)  # alerts whose cause went away
    catalog.sweep(session)  # typical times on site, relearned hourly
    phone_verification.sweep(session)  # unfinished sign-ups and dead codes
    credentials.sweep(session)  # ended login sessions, hourly
    payouts.sweep(session, payments.provider())  # a missed weekly run, payouts not sent
    confirmation.sweep(session)  # escrow due for release (a lost timer), holds re-authorized
    # before they lapse, lapsed holds
    milestones.sweep(session)  # stages of jobs paid in stages due for release
    return touched


def run_sweeper(session: scoped_session[Session], interval: float, *, once: bool = False,
                say: Callable[..., None] = click.echo) -> None:
    """Sweep every `interval` seconds, forever (or once), through database restarts."""
    while True:
        try:
            touched = sweep_once(session)
            if touched:
                say(f"swept {touched} job(s)")
        except Exception as exc:  # keep sweeping through a database restart
            session.rollback()
            say(f"sweep failed: {exc}", err=True)
        finally:
            session.remove()
        if once:
            return
        time.sleep(interval)
