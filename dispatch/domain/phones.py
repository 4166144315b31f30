"""Phone numbers: stored in E.164 only, so masking and SMS never guess a format."""

from __future__ import annotations

import os

import phonenumbers


def normalize_phone(value: str, region: str | None = None) -> str:
    """E.164 form of `value`, parsed in the default region when it has no `+` prefix."""
    region = region or os.environ.get("DEFAULT_PHONE_REGION", "US")
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("is not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
