"""Each worker's active job, cached in Redis for their pings (`dispatch.services.tracking`),
and forgotten after every status change commits (`dispatch.services.push`): the next ping
reads the truth again, and a ping that read the database before the change cannot cache
what it read (the version key)."""

from __future__ import annotations

from dispatch.infra.redis import redis_connection


def active_job_key(worker_id: int) -> str:
    return f"dispatch:active-job:{worker_id}"


def active_job_version_key(worker_id: int) -> str:
    return f"dispatch:active-job-version:{worker_id}"


def forget_active_job(worker_id: int) -> None:
    """Called after a job's status change commits: the next ping reads the truth again, and
    a ping that read the database before the change cannot cache what it read."""
    forget_active_jobs([worker_id])


def forget_active_jobs(worker_ids: list[int]) -> None:
    """`forget_active_job` for many workers in one round trip."""
    pipe = redis_connection().pipeline(transaction=True)
    for worker_id in worker_ids:
        pipe.incr(active_job_version_key(worker_id))
        pipe.delete(active_job_key(worker_id))
    pipe.execute()
