"""An RQ worker for one group of queues (`dispatch.infra.queues.WORKER_GROUPS`), so the queue
names live in one place and scripts, docker-compose.yml and the bench name only the group:

    python -m dispatch.entrypoints.rq_worker timers|messages|batches [rq worker options]

Each group has its own process: a timer never waits behind a batch or a slow SMS."""

from __future__ import annotations

import os
import sys

from dispatch.infra.queues import WORKER_GROUPS


def command(group: str, redis_url: str, extra: list[str]) -> list[str]:
    if group not in WORKER_GROUPS:
        raise SystemExit(f"unknown worker group {group!r}; one of {', '.join(WORKER_GROUPS)}")
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return [rq, "worker", "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler",
            "--url", redis_url, *extra, *WORKER_GROUPS[group]]


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(f"usage: rq_worker GROUP [rq options]; GROUP: {', '.join(WORKER_GROUPS)}")
    args = command(argv[0], os.environ["REDIS_URL"], argv[1:])
    os.execv(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
