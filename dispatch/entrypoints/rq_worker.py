"""An RQ worker for one group of queues (`dispatch.infra.queues.WORKER_GROUPS`), so the queue
names live in one place and scripts, docker-compose.yml and the bench name only the group:

    python -m dispatch.entrypoints.rq_worker timers|messages|batches [rq worker options]

Each group has its own process: a timer never waits behind a batch or a slow SMS."""

from __future__ import annotations

import os
import socket
import sys

from redis import Redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE
from rq.scripts import release_lock

from dispatch.infra.queues import WORKER_GROUPS


def command(group: str, redis_url: str, extra: list[str]) -> list[str]:
    if group not in WORKER_GROUPS:
        raise SystemExit(f"unknown worker group {group!r}; one of {', '.join(WORKER_GROUPS)}")
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return [rq, "worker", "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler",
            "--url", redis_url, *extra, *WORKER_GROUPS[group]]


def _alive(pid: int) -> bool:
    """Whether the process runs; a zombie (killed, not yet reaped by init) does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True


def release_dead_schedulers(redis: Redis, queues: tuple[str, ...]) -> list[str]:
    """Free the scheduler locks of these queues that a dead scheduler on this host still holds.

    A worker killed -9 keeps its scheduler's lock for a minute, and its successor, refused
    at start, asks again only at its maintenance, ten minutes later: until then no offer
    timer runs and every window closes only at the sweeper's next round. A holder on this
    host whose process is gone is dead for sure; any other holder is left to its lock's
    expiry. Returns the queues freed."""
    freed = []
    for name in queues:
        lock = SCHEDULER_LOCKING_KEY_TEMPLATE % name
        holder = redis.get(lock)
        if holder is None:
            continue
        owner = holder.decode()
        found = redis.hmget(SCHEDULER_KEY_TEMPLATE % owner, "hostname", "pid")
        hostname, pid = (v.decode() if v is not None else None for v in found)
        if (hostname == socket.gethostname() and pid and pid.isdigit()
                and not _alive(int(pid)) and release_lock(redis, lock, owner)):
            freed.append(name)
    return freed


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(f"usage: rq_worker GROUP [rq options]; GROUP: {', '.join(WORKER_GROUPS)}")
    args = command(argv[0], os.environ["REDIS_URL"], argv[1:])
    freed = release_dead_schedulers(Redis.from_url(os.environ["REDIS_URL"]),
                                    WORKER_GROUPS[argv[0]])
    if freed:
        print(f"freed the scheduler lock of a dead worker for {', '.join(freed)}", flush=True)
    os.execv(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
