"""Twilio's Messages endpoint as `bench/load.py` needs it: answers every create at once.

Under load the texts of accepted jobs (the resident hears who is coming) go through the real
SDK and the real outbox and RQ task. Twilio itself is not reachable here and Prism, which the
tests use because it checks every request against Twilio's spec, would take a share of the
two cores the benchmark measures; so this answers 201 with a queued message, the fields the
outbox reads, and counts what it was sent. The cost measured stays ours.

    python -m bench.twilio_sink PORT
"""

from __future__ import annotations

import sys
import uuid

from aiohttp import web

_received = 0


async def create_message(request: web.Request) -> web.Response:
    global _received
    form = await request.post()
    _received += 1
    return web.json_response({
        "sid": "SM" + uuid.uuid4().hex, "status": "queued",
        "account_sid": request.match_info["account"], "to": form.get("To"),
        "from": form.get("From"), "body": form.get("Body"), "num_segments": "1",
    }, status=201)


async def stats(_: web.Request) -> web.Response:
    return web.json_response({"messages": _received})


def main() -> None:
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", create_message)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None)


if __name__ == "__main__":
    main()
