"""Which failures mean a server the app needs is out of reach (PostgreSQL or Redis restarting,
failing over, or a connection cut), as opposed to a bug. They last seconds and are nobody's
fault in the request: the HTTP and Socket.IO layers answer them "come back shortly" (503),
never 500, and the pools reconnect by themselves (`pool_pre_ping`, redis-py's reconnect)."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# psycopg raises OperationalError with no SQLSTATE for a refused or dropped connection; the
# server says 08xxx (connection exception) or 57P0x (shutting down, starting up) itself.
_OUTAGE_SQLSTATES = ("08", "57P")


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, RedisConnectionError | RedisTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return sqlstate is None or sqlstate.startswith(_OUTAGE_SQLSTATES)
    return False
