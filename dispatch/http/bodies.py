"""How much of a request body the app reads, by kind: a CSV upload (a batch, a unit import)
may be megabytes, a JSON command or a form never is. An announced body over its cap is
refused from the header alone, before a byte of it is read; a streamed one (chunked, no
length) is read up to its cap and refused past it. Either way the answer is a 413 naming
`body` (`dispatch.http.errors`)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from dispatch.infra.config import Settings

# Bodies read as files (`/batches`, `/units/import`); everything else is a command or a form.
FILE_TYPES = frozenset({"text/csv", "text/plain"})


def body_cap(settings: Settings, content_type: str) -> int:
    """The cap, in bytes, for a body of this content type."""
    mimetype = parse_options_header(content_type)[0].lower()
    return settings.max_file_bytes if mimetype in FILE_TYPES else settings.max_json_bytes


def register_body_caps(app: Flask) -> None:
    inner = app.wsgi_app

    def measured(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """A streamed body becomes a sized one, read up to its cap: werkzeug stops reading
        a stream at the cap without saying it was longer, and a view that never reads its
        body would leave the stream to the server. Past the cap, the length says so and
        the request is refused below without the rest being read."""
        if ("chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
                and not environ.get("CONTENT_LENGTH")):
            cap = body_cap(app.config["DISPATCH"], environ.get("CONTENT_TYPE", ""))
            raw = environ["wsgi.input"].read(cap + 1)
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            environ.pop("HTTP_TRANSFER_ENCODING")
        return inner(environ, start_response)

    app.wsgi_app = measured  # type: ignore[method-assign]

    def cap_body() -> None:
        cap = body_cap(app.config["DISPATCH"], request.content_type or "")
        request.max_content_length = cap  # werkzeug refuses past it, whoever reads
        if request.content_length is not None and request.content_length > cap:
            raise RequestEntityTooLarge()

    # First of all, before the CSRF check reads a form.
    app.before_request_funcs.setdefault(None, []).insert(0, cap_body)
