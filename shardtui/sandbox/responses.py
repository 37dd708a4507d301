"""JSON HTTP responses the way Discord sends them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, status: int = 200) -> web.Response:
    # Built by hand: web.json_response appends "; charset=utf-8", which strict clients treat as text.
    response = web.Response(
        body=orjson.dumps(data), status=status, headers={"Content-Type": "application/json"}
    )
    # No keep-alive: the server's per-connection task ends with the response, so a client that
    # closed its session leaves no sandbox task waiting for an idle timeout.
    response.force_close()
    return response


def error_response(status: int, message: str, code: int = 0) -> web.Response:
    return json_response({"message": message, "code": code}, status=status)
