"""Outgoing webhooks to property-management systems: each job state change of an
organization's job is a delivery row (written with the change), POSTed as JSON signed with
HMAC-SHA256 over the send time and the exact body (`X-Dispatch-Signature:
t=<unix seconds>,sha256=<hex of HMAC(secret, "<t>." + body)>`), retried by the queue until
the receiver answers 2xx. Receivers verify with `verify` (or its few lines in their own
language): a signature older than `SIGNATURE_TOLERANCE_S` is refused, so a captured request
cannot be replayed later; they de-duplicate on `X-Dispatch-Delivery`.

Never imports `dispatch`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import text
from sqlalchemy.orm import Session

from notifications.states import DeliveryStatus as D
from notifications.states import sql_list
from notifications.stranded import requeue_stranded

TIMEOUT_S = 10.0
SIGNATURE_TOLERANCE_S = 300  # clock skew plus transit; beyond it a request is a replay


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to, in the resolver's order: one lookup, whose answer
    is both checked and connected to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return addresses


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is not an address
    return ip.is_global and not ip.is_multicast


def public_destination(url: str) -> bool:
    """Whether every address the URL's host resolves to is public: a manager must not be
    able to make our workers POST to loopback, private, link-local or metadata addresses.
    (Said when the URL is saved; each delivery checks again, see `deliver`.)"""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        return all(_public(a) for a in resolve(host, _port(url)))
    except (OSError, ValueError):
        return False


class _PinnedAddress(HTTPAdapter):
    """Connects to one address decided beforehand, whatever the name resolves to by then
    (a rebinding name answers a public address to the check and 127.0.0.1 to the
    connection). The URL's name still goes in the Host header, TLS SNI and the certificate
    check. `build_connection_pool_key_attributes` is requests' seam for this."""

    def __init__(self, address: str) -> None:
        super().__init__(max_retries=0)
        self.address = address

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        name = host_params["host"]
        host_params["host"] = self.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def _post_to(address: str, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST to `address` (the one that was checked), naming the URL's host to the server."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    named = f"[{host}]" if ":" in host else host
    with requests.Session() as http:
        http.trust_env = False  # a proxy from the environment would resolve the name again
        adapter = _PinnedAddress(address)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
        response = http.post(url, data=body, timeout=TIMEOUT_S, allow_redirects=False,
                             headers={**headers, "Host": named + (
                                 f":{parts.port}" if parts.port else "")})
        return response.status_code


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Each attempt signs with its own send time: a retry hours later is still fresh."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},sha256={mac.hexdigest()}"


def verify(secret: str, body: bytes, signature: str, now: float,
           tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver does: recompute over the send time and the raw body, compare in
    constant time, and refuse a send time further than the tolerance from its own clock."""
    fields = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
    stamp = fields.get("t", "")
    if not re.fullmatch(r"[0-9]{1,12}", stamp) or abs(now - int(stamp)) > tolerance_s:
        return False
    # Bytes: a header with non-ASCII characters is a mismatch, not an exception.
    return hmac.compare_digest(sign(secret, body, int(stamp)).encode(),
                               signature.encode("utf-8", "surrogateescape"))


def enqueue(session: Session, *, org_id: int, job_id: int, event: str, key: str,
            payload: dict[str, Any], now: datetime) -> int | None:
    return session.execute(text("""
INSERT INTO webhook_deliveries (org_id, job_id, event, idempotency_key, payload, created_at,
                                updated_at)
VALUES (:org, :job, :event, :key, CAST(:payload AS jsonb), :now, :now)
ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"""),
        {"org": org_id, "job": job_id, "event": event, "key": key,
         "payload": json.dumps(payload), "now": now}).scalar_one_or_none()


class DeliveryFailed(Exception):
    """The receiver did not take it; the queue retries."""


def deliver(session: Session, delivery_id: int, now: datetime,
            allow_private: bool = False) -> str:
    """One attempt; returns 'sent' or 'already_done', raises DeliveryFailed to be retried.
    The destination is checked again at send time (DNS may have changed since), and the
    request goes to the very address that was checked: the name is resolved once."""
    row = session.execute(text(f"""
UPDATE webhook_deliveries d SET status = '{D.SENDING}', attempts = attempts + 1, updated_at = :now
  FROM organizations o
 WHERE d.id = :id AND o.id = d.org_id AND d.status IN {sql_list((D.QUEUED, D.RETRYING))}
RETURNING d.id, d.event, d.payload, o.webhook_url, o.webhook_secret"""),
        {"id": delivery_id, "now": now}).first()
    session.commit()
    if row is None:
        return "already_done"
    if not row.webhook_url or not row.webhook_secret:
        _set(session, delivery_id, D.FAILED, "the organization has no webhook URL", now)
        return D.FAILED
    host = urlsplit(row.webhook_url).hostname or ""
    try:
        addresses = resolve(host, _port(row.webhook_url))
    except OSError as exc:  # DNS may come back: retried, like a refused connection
        _set(session, delivery_id, D.RETRYING, f"cannot resolve {host}: {exc}", now)
        raise DeliveryFailed(str(exc)) from exc
    if not allow_private and not all(_public(a) for a in addresses):
        _set(session, delivery_id, D.FAILED, "the webhook URL does not resolve to a public "
                                             "address", now)
        return D.FAILED
    body = json.dumps(row.payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Dispatch-Event": row.event,
               "X-Dispatch-Delivery": str(row.id),
               "X-Dispatch-Signature": sign(row.webhook_secret, body, int(time.time()))}
    try:
        status = _post_to(addresses[0], row.webhook_url, body, headers)
    except requests.RequestException as exc:
        _set(session, delivery_id, D.RETRYING, f"{type(exc).__name__}: {exc}", now)
        raise DeliveryFailed(str(exc)) from exc
    if not 200 <= status < 300:
        _set(session, delivery_id, D.RETRYING, f"HTTP {status}", now)
        raise DeliveryFailed(f"HTTP {status}")
    _set(session, delivery_id, D.SENT, None, now)
    return D.SENT


def stranded(session: Session, now: datetime) -> list[int]:
    """Deliveries nobody is working on (see `requeue_stranded`); a receiver de-duplicates on
    X-Dispatch-Delivery if a dead sender had in fact delivered."""
    # Past the longest backoff (30 min) a 'retrying' delivery has lost its retry.
    return requeue_stranded(session, "webhook_deliveries", now, timedelta(minutes=45))


def give_up(session: Session, delivery_id: int, error: str, now: datetime) -> None:
    session.execute(text(f"UPDATE webhook_deliveries SET status = '{D.FAILED}', "
                         "last_error = :e, updated_at = :now "
                         f"WHERE id = :id AND status <> '{D.SENT}'"),
                    {"id": delivery_id, "e": error[:1000], "now": now})
    session.commit()


def _set(session: Session, delivery_id: int, status: str, error: str | None,
         now: datetime) -> None:
    session.execute(text("UPDATE webhook_deliveries SET status = :s, last_error = :e, "
                         "updated_at = :now WHERE id = :id"),
                    {"s": status, "e": error[:1000] if error else None, "now": now,
                     "id": delivery_id})
    session.commit()
