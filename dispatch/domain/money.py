"""Money is a plain `int` of minor units ("cents") with an ISO 4217 currency beside it;
never a float."""

from __future__ import annotations

# Symbols and minor-unit digits of the currencies the product is run in; any other is
# written with its code ("CHF 12.50").
_SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_ZERO_DECIMAL = frozenset({"JPY", "KRW"})


def format_cents(cents: int, currency: str, whole: bool = False) -> str:
    """`format_cents(1250, "USD")` -> "$12.50"; `whole=True` drops ".00" from whole
    amounts ("$95"), as estimates are shown. The pages' JS does the same with
    Intl.NumberFormat (static/js/common.js `formatCents`)."""
    code = currency.upper()
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    if code in _ZERO_DECIMAL:
        number = f"{cents:,}"
    else:
        units, rest = divmod(cents, 100)
        number = f"{units:,}" if whole and rest == 0 else f"{units:,}.{rest:02d}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"
