"""An RQ worker for one group of queues (`dispatch.infra.queues.WORKER_GROUPS`), so the queue
names live in one place and scripts, docker-compose.yml and the bench name only the group:

    python -m dispatch.entrypoints.rq_worker timers|messages|batches [rq worker options]

Each group has its own process: a timer never waits behind a batch or a slow SMS."""

from __future__ import annotations

import os
import socket
import sys
import time

from redis import Redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE
from rq.scripts import release_lock

from dispatch.infra.queues import WORKER_GROUPS

# The scheduler that queues offer timers runs as a child of the timers worker and dies when
# Redis goes away; the worker starts it again only at its maintenance, which runs between
# waits for work (405 s by default) and at most every 10 minutes: that long without a timer
# after every Redis restart. Timer jobs take milliseconds, so this worker waits 5 s at a time
# (its ttl less 15 s) and looks after its scheduler every 5 s. (Not for batches: a worker
# runs its job in its own process and does not beat meanwhile, and batches run minutes.)
GROUP_OPTIONS = {"timers": ["--worker-ttl", "20", "--maintenance-interval", "5"]}


def command(group: str, redis_url: str, extra: list[str]) -> list[str]:
    if group not in WORKER_GROUPS:
        raise SystemExit(f"unknown worker group {group!r}; one of {', '.join(WORKER_GROUPS)}")
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return [rq, "worker", "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler",
            "--url", redis_url, *GROUP_OPTIONS.get(group, []), *extra, *WORKER_GROUPS[group]]


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


# A live scheduler beats every second; one whose beat stands still this long is dead (or so
# stuck that handing its queues over is right: RQ drops a lock it finds taken over).
HEARTBEAT_STALE_S = 5.0


def release_dead_schedulers(redis: Redis, queues: tuple[str, ...],
                            stale_s: float = HEARTBEAT_STALE_S) -> list[str]:
    """Free the scheduler locks of these queues that a dead scheduler still holds.

    A worker killed -9 keeps its scheduler's lock for a minute, and its successor, refused
    at start, asks again only at its maintenance, ten minutes later: until then no offer
    timer runs and every window closes only at the sweeper's next round. Returns the queues
    freed (the lock is released only while the dead holder still holds it)."""
    freed = []
    for name in queues:
        lock = SCHEDULER_LOCKING_KEY_TEMPLATE % name
        holder = redis.get(lock)
        if holder is None:
            continue
        owner = holder.decode()
        if _holder_dead(redis, owner, stale_s) and release_lock(redis, lock, owner):
            freed.append(name)
    return freed


def _holder_dead(redis: Redis, owner: str, stale_s: float) -> bool:
    """Dead for sure when it ran on this host and its process is gone; otherwise (another
    host, or its record lost with a Redis restart) when its heartbeat stands still."""
    key = SCHEDULER_KEY_TEMPLATE % owner
    hostname, pid, beat = redis.hmget(key, "hostname", "pid", "last_heartbeat")
    if hostname is not None and hostname.decode() == socket.gethostname() and pid \
            and int(pid) > 0:
        return not _alive(int(pid))
    deadline = time.monotonic() + stale_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if redis.hget(key, "last_heartbeat") != beat:
            return False
    return True


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
