"""The ping's own Redis lane: it must survive what redis-py's pool survives."""

from __future__ import annotations

import pytest
from flask import Flask
from redis import Redis
from redis.exceptions import ResponseError

from dispatch.infra.leanscript import LeanScript

COUNT = "return redis.call('INCR', KEYS[1])"
KEY = "test:leanscript:n"


def test_runs_reloads_a_flushed_script_and_reuses_its_connection(app: Flask) -> None:
    redis = Redis.from_url(app.config["REDIS_URL"])
    script = LeanScript(app.config["REDIS_URL"], COUNT)
    assert script([KEY], []) == 1
    redis.script_flush()  # Redis lost the script (restart, failover)
    assert script([KEY], []) == 2
    assert len(script._idle) == 1  # one connection, reused


def test_an_error_reply_drops_the_connection_and_the_next_call_works(app: Flask) -> None:
    failing = LeanScript(app.config["REDIS_URL"], "return redis.call('NOSUCHCOMMAND')")
    with pytest.raises(ResponseError):
        failing(["x"], [])
    assert failing._idle == []  # never reused after an error
    assert LeanScript(app.config["REDIS_URL"], COUNT)([KEY], []) == 1


def test_an_idle_connection_killed_by_the_server_is_replaced(app: Flask) -> None:
    redis = Redis.from_url(app.config["REDIS_URL"])
    script = LeanScript(app.config["REDIS_URL"], COUNT)
    assert script([KEY], []) == 1
    conn = script._idle[0]
    conn.send_command("CLIENT", "ID")
    redis.client_kill_filter(_id=conn.read_response())  # as a Redis restart would
    assert script([KEY], []) == 2
    assert script._idle[0] is not conn


def test_an_interrupted_call_never_hands_its_reply_to_the_next_caller(app: Flask) -> None:
    """A call cut off after sending (a greenlet killed, a timeout) leaves a reply in the
    socket; the connection must be dropped, not reused with that reply waiting."""
    script = LeanScript(app.config["REDIS_URL"], COUNT)
    assert script([KEY], []) == 1
    conn = script._idle[0]
    original = conn.read_response

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt  # a BaseException, like gevent's GreenletExit

    conn.read_response = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        script([KEY], [])
    conn.read_response = original  # type: ignore[method-assign]
    assert conn not in script._idle
    assert script([KEY], []) == 3  # the interrupted INCR ran; its reply was not reused
