"""Every sentence a person may read about a refused input, in one place.

A refusal names its problem by a stable message id (`"text.too_short"`) with parameters; the
catalogue turns that into an English sentence. Clients get both (the id as a field problem's
`kind`), so a program can react to the id and a page can show the sentence. The templates use
`%(name)s` placeholders, the form gettext and Flask-Babel read, so translating later means
extracting `MESSAGES` and wrapping `say`'s lookup in `gettext`: nothing else changes.

Pure: no Flask, no database. Field names (`lat`, `category_id`) are turned into the words a
page uses for them (`FIELD_LABELS`), so a sentence never shows an internal name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Message id -> English template. Ids are stable: clients and translators key on them.
MESSAGES: dict[str, str] = {
    # Generic, by kind of problem; %(label)s is the thing's name as a page shows it.
    "required": "Fill in %(label)s.",
    "text.too_short": "Write at least %(min_length)s characters for %(label)s.",
    "text.too_long": "Keep %(label)s to %(max_length)s characters or fewer.",
    "text.nul": "Remove the invisible control characters from %(label)s.",
    "text.control": "Remove the invisible control characters from %(label)s.",
    "text.one_line": "Write %(label)s on one line, without line breaks or tabs.",
    "text.unreadable": "%(Label)s has a broken character; type it again.",
    "text.expected": "Write %(label)s as text.",
    "number.expected": "Enter %(label)s as a number.",
    "number.whole": "Enter %(label)s as a whole number.",
    "number.too_small": "Enter %(label)s of at least %(limit)s.",
    "number.too_large": "Enter %(label)s of at most %(limit)s.",
    "choice.unknown": "Choose %(label)s from the list.",
    "list.too_short": "Choose at least %(min_length)s for %(label)s.",
    "list.too_long": "Choose at most %(max_length)s for %(label)s.",
    "time.invalid": "Enter %(label)s as a date and time.",
    "time.needs_zone": "Give %(label)s with its time zone.",
    "time.future": "%(Label)s is in the future: check the phone's clock.",
    "time.too_old": "%(Label)s is more than %(seconds)s seconds old; send a fresh one.",
    "unknown_field": "%(Label)s is not something this form takes.",
    "invalid": "Check %(label)s: it is not valid.",
    "body.not_object": "Send the details as a JSON object.",
    "body.not_json": "Send the details as JSON.",
    "file.not_utf8": "Line %(line)s is not UTF-8 text: save the file as UTF-8 text (CSV UTF-8) "
                     "and upload it again.",
    "file.nul": "Line %(line)s holds a character a text file never does: save the file as "
                "CSV UTF-8 and upload it again.",
    "body.too_large": "Send at most %(limit)s at once; split what you send into smaller parts.",
    "file.missing_columns": "The file's first line needs the column(s): %(columns)s.",
    "file.duplicate_column": "Line %(line)s names the column '%(name)s' twice; keep one of "
                             "them.",
    "file.unreadable": "Line %(line)s cannot be read as CSV: a cell that holds a comma, a "
                       "quote or a line break goes in double quotes, and a quote inside it is "
                       "doubled.",
    "file.unclosed_quote": "The double quote opened on line %(line)s is never closed; close it "
                           "or remove it.",
    "file.cell_too_long": "Line %(line)s has a cell longer than %(limit)s characters; shorten "
                          "it, or check that its quotes are closed.",
    "file.too_many_columns": "Line %(line)s names %(found)s columns; a file may have at most "
                             "%(limit)s.",
    "file.extra_cells": "Line %(line)s has %(found)s cells but the first line names "
                        "%(columns)s columns; put a cell that holds a comma in double quotes.",
    "file.no_rows": "The file has no rows under its first line.",
    "file.not_csv": "Upload the file as a CSV file.",
    "file.too_many_rows": "The file has more than %(limit)s rows; split it into smaller files.",
    "file.concurrent": "Another upload of these units is running; send the file again when "
                       "it is done.",
    # Particular fields, where a plain sentence says more than the generic one.
    "description.too_short": "Describe the problem in at least %(min_length)s characters.",
    "description.length": "Describe the problem in 3 to 2000 characters.",
    "location.required": "Pick a place on the map.",
    "location.invalid": "Pick a place on the map.",
    "date.invalid": "Enter %(label)s as a date, such as 2026-12-04.",
    "text.format": "Check how %(label)s is written: it is not in the expected form.",
    "window.refused": "%(detail)s.",
    "password.not_current": "That is not your current password.",
    "invitation.not_yours": "There is no such invitation for you.",
    "invitation.not_sent": "Your organization sent no such invitation.",
    "reset_link.dead": "This link has expired or was already used: ask for a new one.",
    "contact.invalid": "Enter an e-mail address or a mobile phone number.",
    "query.required": "Type at least part of the address.",
    "choice.yes_no": "Answer %(label)s with true or false.",
    "email.invalid": "Enter an email address like name@example.com.",
    "email.taken": "This email address is already registered; log in instead.",
    "phone.invalid": "Enter a mobile phone number, e.g. +1 415 555 0100.",
    "phone.taken": "This phone number is already registered.",
    "phone.unverified": "Confirm your phone number first: ask for a code on your profile "
                        "page and enter it there.",
    "phone.already_verified": "Your phone number is already confirmed.",
    "phone.code_unavailable": "The code could not be texted or checked just now; try again "
                              "in a minute.",
    "phone_code.wrong": "That code is wrong or no longer works: ask for a new one.",
    "password.too_short": "Choose a password of at least %(min_length)s characters.",
    "password.wrong": "The email address or password is wrong.",
    "password.weak": "Choose a password that is harder to guess. %(reason)s A few uncommon "
                     "words together make a good one.",
    "webhook_url.invalid": "Enter a web address starting with https:// or http://.",
    "signature.bad": "%(Label)s is missing, does not match, or is more than five minutes "
                     "old.",
    "webhook_url.private": "Enter a web address on the public internet.",
    "month.format": "Enter the month like 2026-11.",
    "month.range": "Enter a month between the years 1 and 9999.",
    "cursor.invalid": "This page link is out of date or was changed: start again from the "
                      "first page.",
    "query.repeated": "Give %(label)s once only.",
    "status.unknown": "There is no status called '%(status)s'.",
    "status.not_for_workers": "Workers cannot mark a job as %(status)s.",
    "category.unknown": "There is no service number %(category_id)s; choose one from the list.",
    "category.group": "%(path)s is a group of services; choose one of them.",
    "category.not_bookable": "There is no bookable service called '%(value)s'.",
    "category.not_a_skill": "The worker does not offer this service.",
    "idempotency_key.required": "Send an Idempotency-Key header (any unique text per booking).",
    "idempotency_key.too_long": "Keep the Idempotency-Key to %(max_length)s characters or "
                                "fewer.",
    "idempotency_key.reused": "This Idempotency-Key was already used for a different booking.",
    "batch_key.invalid": "Give the batch a key of 1 to 200 characters.",
    "batch_key.reused": "This batch key was already used for different rows.",
    "rows.too_many": "Send at most %(limit)s rows in one batch.",
    "row.not_object": "Each row must be an object.",
    "unit.unknown": "There is no such unit in your portfolio.",
    "unit.unknown_in_property": "There is no unit '%(unit)s' in the property '%(property)s'.",
    "unit.label_taken": "This property already has a unit with that name.",
    "unit.has_jobs": "This unit has jobs, so it is kept for their history.",
    "property.unknown": "There is no property '%(name)s' in your portfolio.",
    "property.unknown_id": "There is no property number %(property_id)s in your portfolio.",
    "property.name_taken": "Your portfolio already has a property with that name.",
    "property.id_expected": "Give the property as its number.",
    "unit.unknown_id": "There is no unit number %(unit_id)s in your portfolio.",
    "worker.unknown": "There is no worker number %(worker_id)s.",
    "urgency.window": "Write 'urgent' or a time window; this one does not work: %(detail)s.",
    "budget_cap.invalid": "Enter the budget cap as a positive amount, e.g. 250.",
    "organization.missing": "You have no organization yet: create it first.",
    "organization.exists": "You already manage an organization.",
    "unit.book_needs_manager": "Only property managers book for units.",
    "availability.busy": "Finish your active job first (or ask the resident to cancel it).",
    "role.needed": "This is for %(needed)s. You are logged in as %(actual)s.",
    "role.page_needed": "This page is for %(needed)s. You are logged in as %(actual)s.",
    "role.needed_anonymous": "This is for %(needed)s. Log in first.",
    "login.required": "Log in first.",
    "token.invalid": "Your sign-in has expired or was revoked; log in again.",
    "csrf.failed": "This page was open too long or its form is out of date; reload the page "
                   "and try again.",
    "transition.illegal": "%(Thing)s that is %(current)s cannot become %(target)s.",
    "status.busy": "Finish the job you are on before setting out for this one.",
    "status.too_early": "It is too early to set out: you can set out from %(time)s.",
    "hand_back.set_out": "You are on your way: tap \"I can't make it\" and say why instead.",
    "hand_back.note_needed": "Say in a few words why you cannot make it.",
    "alert.not_open": "This alert was already resolved.",
    "webhook_url.needed_for_secret": ("Set the web address first: the secret signs what is "
                                      "sent there."),
    "job_id.invalid": "That is not a job number.",
    "amount.not_whole": "Enter %(label)s as a whole number of cents.",
    "amount.not_positive": "Enter %(label)s as an amount above zero.",
    "amount.negative": "Enter %(label)s as an amount of zero or more.",
    "currency.other": "Give %(label)s in %(expected)s, the only currency taken here.",
    "ledger.unbalanced": "The entries of a money movement must add up to zero in each "
                         "currency.",
    "ledger.insufficient": "There is not enough money in this account for that movement.",
    "ledger.zero_entry": "Leave out entries of zero: each entry moves some money.",
    "limits.soft_above_hard": "Set %(label)s no higher than the hard limit.",
    "limits.pair": "Set both the soft and the hard limit, or clear both.",
    "approval.reason_needed": "Say in a few words why the amount is declined.",
    "ledger.key_reused": "This key was already used for a different money movement.",
    "payout.below_minimum": "An instant payout is at least %(minimum)s.",
    "payout.over_balance": "You can take out at most %(balance)s, what your balance holds.",
    "payout.account_needed": "Set up payouts first: we need an account to send the money "
                             "to.",
    "payment.declined": "The card was declined (%(reason)s): use another card.",
    "payment.method_required": "Give a payment method to hold the price of the job.",
    "payment.method_unknown": "The payment provider does not know this payment method.",
    "payment.unavailable": "The payment provider could not be reached: try again.",
    "payment.not_completed": "Confirm the work once the worker has marked it completed.",
    "payment.rejected": "The payment provider refused to move the money (%(reason)s): our "
                        "team has to look at this payment.",
    "final_amount.rate_outside": "Charge between %(low)s and %(high)s an hour for this "
                                 "kind of work.",
    "final_amount.awaiting": "The final amount is waiting for approval: approve it (or the "
                             "worker revises it) before the work is confirmed.",
    "final_amount.not_in_review": "No final amount is waiting for your approval on this job.",
    "final_amount.settled": "This job's final amount is settled: it can no longer be revised.",
    "final_amount.org_approvers": "The organization's approvers decide this amount on the "
                                  "approvals page.",
    "final_amount.increment_declined": "The card declined the higher amount: the payer has "
                                       "to use another card or agree a lower amount.",
    "milestone.not_in_progress": "Mark a stage done while the job is in progress.",
    "milestone.not_held": "This stage is not held yet: its money must be held before the "
                          "work on it counts.",
    "milestone.not_done": "Confirm this stage once the worker has marked it done.",
    "milestone.confirm_each": "This job is paid in stages: confirm each stage on its own.",
    "milestone.mark_each": "This job is paid in stages: mark each stage done on its own.",
    "milestone.not_waiting": "This stage is not waiting for its money to be held.",
    "milestone.urgent": "Stages are for a booked window or a long job: book it for later to "
                        "pay in stages, or pay an urgent job in one hold.",
    "milestone.below_estimate": "The stages add up to %(total)s, less than the estimate's "
                                "low end (%(low)s): plan stages that cover the work.",
    "milestone.above_limit": "The stages add up to %(total)s, above your organization's "
                             "limit for this job (%(limit)s): book it in one hold so a "
                             "manager can approve the final amount, or plan less.",
    # Not about one field.
    "not_found": "We could not find this %(what)s.",
    "overloaded": "The service is busy; try again in a few seconds.",
    "too_many_requests": "Too many tries in a short time; try again in %(seconds)s seconds.",
    "unavailable": "The service is restarting a part; try again in a few seconds.",
    "unexpected": "Something went wrong on our side; it has been logged. Try again in a moment.",
}

# Error pages, by HTTP status: (heading, sentence). The status is the transport's business;
# these are only the words, kept here with the rest so they are translated together.
PAGE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("That did not work", "The request could not be understood. Go back and try again."),
    401: ("Please log in", "Log in to see this page."),
    403: ("Not for this account", "This page is not available to your account."),
    404: ("Page not found", "There is no page at this address. It may have moved, or the "
                            "link may be mistyped."),
    405: ("That did not work", "This page cannot be used that way. Use the links and buttons "
                               "on the site instead."),
    409: ("Something changed meanwhile", "This could not be done because things changed in "
                                         "the meantime. Reload the page and try again."),
    413: ("Too large", "What you sent is too large. Send something smaller."),
    415: ("That did not work", "What you sent is not in a form this page takes."),
    422: ("Please check the details", "Some details were not accepted."),
    429: ("Too many tries", "Too many requests in a short time. Wait a minute and try again."),
    500: ("Something went wrong", "Something went wrong on our side; it has been logged. "
                                  "Try again in a moment."),
    503: ("Busy right now", "The service is very busy. Try again in a few seconds."),
}


# An error page's way back, by the role whose home it leads to ("" = nobody logged in).
BACK_LINKS = {"worker": "Back to your shift", "property_manager": "Back to your jobs",
              "resident": "Back to booking", "admin": "Back to all jobs",
              "": "Go to the home page"}


def page_error(status: int) -> tuple[str, str]:
    """The heading and sentence of an error page (a 4xx or 5xx we have no words for reads
    as its class's nearest: 400 or 500)."""
    return PAGE_ERRORS.get(status) or PAGE_ERRORS[500 if status >= 500 else 400]


# Field names (as the API spells them) -> the words a page uses for the thing.
FIELD_LABELS: dict[str, str] = {
    "amount_cents": "the amount",
    "emergency_soft_cents": "the emergency soft limit",
    "emergency_hard_cents": "the emergency hard limit",
    "routine_soft_cents": "the routine soft limit",
    "routine_hard_cents": "the routine hard limit",
    "fee_cents": "the fee",
    "currency": "the currency",
    "entries": "the entries",
    "window": "the window",
    "window.date": "the day",
    "window.start": "the start of the window",
    "window.end": "the end of the window",
    "contact": "the e-mail address or phone number",
    "current_password": "your current password",
    "invitation_id": "the invitation",
    "q": "the address",
    "limit": "the page size",
    "cursor": "the page link",
    "format": "the format",
    "confirm_duplicate": "the confirmation",
    "token": "the link",
    "description": "the description",
    "category_id": "the service",
    "category_ids": "the services",
    "category": "the service",
    "address": "the address",
    "lat": "the place on the map",
    "lng": "the place on the map",
    "location": "the place on the map",
    "email": "the email address",
    "password": "the password",
    "name": "the name",
    "phone": "the phone number",
    "code": "the code",
    "role": "what you want to do",
    "locale": "the language",
    "label": "the unit's name",
    "access_notes": "the access notes",
    "tenant_name": "the tenant's name",
    "tenant_phone": "the tenant's phone",
    "property": "the property",
    "property_id": "the property",
    "unit": "the unit",
    "unit_id": "the unit",
    "urgency": "the urgency",
    "budget_cap": "the budget cap",
    "window_start": "the start of the time window",
    "window_end": "the end of the time window",
    "recorded_at": "the position's time",
    "accuracy_m": "the position's accuracy",
    "heading": "the heading",
    "speed_mps": "the speed",
    "availability": "your availability",
    "travel_mode": "how you travel",
    "service_radius_m": "how far you travel",
    "status": "the status",
    "reason": "the reason",
    "webhook_url": "the web address",
    "signature": "the payment provider's signature",
    "batch_key": "the batch key",
    "rows": "the rows",
    "file": "the file",
    "month": "the month",
    "body": "the details",
    "job_id": "the job",
}

# What a state machine moves, as a sentence names it.
ENTITIES = {"job": "a job", "offer": "an offer", "availability": "a worker",
            "batch": "a batch", "approval": "an approval request", "payment": "a payment",
            "milestone": "a stage of the job"}

# Roles as people name them: who a page is for, and who someone is.
ROLE_GROUPS = {"resident": "residents", "worker": "workers",
               "property_manager": "property managers", "admin": "operators"}
ROLE_ONE = {"resident": "a resident", "worker": "a worker",
            "property_manager": "a property manager", "admin": "an operator"}

# Location fixes dropped rather than stored, by the reason tracking gives.
LOCATION_REFUSALS = {
    "out_of_order": "An older position arrived after a newer one; it was left out.",
    "implausible_jump": "This position is too far from the last one to be real; it was left "
                        "out.",
    "rate_limited": "Positions are arriving faster than one a second; this one was left out.",
}


def label(field: str) -> str:
    """The words a page uses for a field (`category_ids.1` is one of the services)."""
    head = field.split(".", 1)[0]
    return FIELD_LABELS.get(field) or FIELD_LABELS.get(head, "this value")


class _Params(dict[str, Any]):
    """A parameter a template names but nobody gave reads as "it", not as a crash."""

    def __missing__(self, key: str) -> str:
        return "it"


# The most of one value a sentence quotes: values often come from the input ("There is no
# bookable service called '...'"), and a refusal must not hand a huge input back.
MAX_QUOTED_CHARS = 100


def clipped(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def say(message_id: str, params: Mapping[str, Any] | None = None, field: str = "") -> str:
    """The sentence for a message id. `%(label)s` / `%(Label)s` are filled from `field`."""
    template = MESSAGES[message_id]
    values = _Params(label=label(field))
    values.update({k: clipped(v, MAX_QUOTED_CHARS) if isinstance(v, str) else v
                   for k, v in (params or {}).items()})
    values["Label"] = capitalized(str(values["label"]))
    return template % values


def capitalized(text: str) -> str:
    """The first letter upper case, the rest as it is (unlike `str.capitalize`)."""
    return text[:1].upper() + text[1:]


def is_known(message_id: str) -> bool:
    return message_id in MESSAGES


def roles_text(roles: list[str]) -> str:
    """`["worker"]` -> "workers"; two or more joined with "or"."""
    names = [ROLE_GROUPS.get(r, r.replace("_", " ")) for r in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def location_refusal(reason: str) -> str:
    return LOCATION_REFUSALS.get(reason, "This position was left out.")


# pydantic's error types -> our message ids.
_PYDANTIC: dict[str, str] = {
    "missing": "required",
    "string_too_short": "text.too_short",
    "string_too_long": "text.too_long",
    "string_type": "text.expected",
    "float_parsing": "number.expected",
    "float_type": "number.expected",
    "finite_number": "number.expected",
    "int_parsing": "number.whole",
    "int_type": "number.whole",
    "int_from_float": "number.whole",
    "bool_parsing": "choice.unknown",
    "bool_type": "choice.unknown",
    "greater_than": "number.too_small",
    "greater_than_equal": "number.too_small",
    "less_than": "number.too_large",
    "less_than_equal": "number.too_large",
    "literal_error": "choice.unknown",
    "enum": "choice.unknown",
    "too_short": "list.too_short",
    "too_long": "list.too_long",
    "date_parsing": "date.invalid",
    "date_type": "date.invalid",
    "date_from_datetime_parsing": "date.invalid",
    "string_pattern_mismatch": "text.format",
    "datetime_parsing": "time.invalid",
    "datetime_type": "time.invalid",
    "datetime_from_date_parsing": "time.invalid",
    "timezone_aware": "time.needs_zone",
    "extra_forbidden": "unknown_field",
    "model_type": "body.not_object",
    "dict_type": "body.not_object",
    "model_attributes_type": "body.not_object",
}


def for_pydantic(error_type: str, field: str, context: Mapping[str, Any] | None
                 ) -> tuple[str, dict[str, Any]]:
    """(message id, parameters) for one of pydantic's errors on `field`: a message id of our
    own when a validator raised one (`PydanticCustomError("email.invalid", ...)`), else the
    generic id for pydantic's type, made particular to the field when the catalogue has a
    sentence for it (`description.too_short`)."""
    params = {k: v for k, v in (context or {}).items() if isinstance(v, str | int | float)}
    if "ge" in params or "gt" in params or "le" in params or "lt" in params:
        params["limit"] = next(params[k] for k in ("ge", "gt", "le", "lt") if k in params)
    message_id = error_type if is_known(error_type) else _PYDANTIC.get(error_type, "invalid")
    head = field.split(".", 1)[0]
    if head in ("lat", "lng"):
        return ("location.required" if message_id == "required" else "location.invalid"), params
    particular = f"{head}.{message_id.rsplit('.', 1)[-1]}"
    if is_known(particular) and _fits(particular, params):
        return particular, params
    return message_id, params


def _fits(message_id: str, params: Mapping[str, Any]) -> bool:
    """Whether every parameter the template names is there."""
    try:
        MESSAGES[message_id] % {"label": "", "Label": "", **params}
    except KeyError:
        return False
    return True
