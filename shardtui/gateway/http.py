"""``GET /gateway/bot``: where to connect, how many shards, and the session start budget.

Liberal in what it accepts (any JSON content type, a query string on the url, numbers sent as
strings), strict about what it reports: every failure is one error naming the url and the problem,
and never the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from shardtui import __version__
from shardtui.gateway.errors import FatalGatewayError, GatewayError
from shardtui.gateway.gate import SYSTEM_CLOCK, Clock, SessionStartLimit, describe_duration
from shardtui.gateway.shard import server_query

log = logging.getLogger("shardtui.gateway.http")

USER_AGENT = f"DiscordBot (https://github.com/shardtui/shardtui, {__version__}) shardtui"
#: A 429 asking for a longer wait than this is reported instead of slept through.
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class GatewayBotInfo:
    """What ``/gateway/bot`` said. ``url`` is as advertised minus any fragment; the Shard adds its own
    query parameters to it."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit | None


def normalise_gateway_url(url: str) -> str:
    """Drop the fragment and the parameters the client sets itself (v, encoding, compress), and give a
    bare host a ``/`` path (``wss://host/``). The path and any other query stay as advertised: a server
    or reverse proxy may route only that exact path, and the Shard adds its own parameters after them."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError(f"not a WebSocket url: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", server_query(parts.query), ""))


def _int_field(data: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if value is None:
        raise ValueError(f"{where} has no {key!r}")
    if isinstance(value, bool):
        raise ValueError(f"{where}.{key} is not a number: {value!r}")
    try:
        return int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}.{key} is not a number: {value!r}") from None


def parse_gateway_bot(body: Any, now: float) -> GatewayBotInfo:
    """Read a decoded ``/gateway/bot`` body; ``now`` (wall time) anchors ``reset_after``."""
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError("no 'url' in the response")
    shards = _int_field(body, "shards", "response", default=1)
    if shards < 1:
        raise ValueError(f"'shards' must be at least 1, got {shards}")
    limit = None
    raw_limit = body.get("session_start_limit")
    if isinstance(raw_limit, dict):
        where = "session_start_limit"
        total = _int_field(raw_limit, "total", where)
        remaining = _int_field(raw_limit, "remaining", where, default=total)
        reset_after_ms = _int_field(raw_limit, "reset_after", where, default=0)
        max_concurrency = max(1, _int_field(raw_limit, "max_concurrency", where, default=1))
        limit = SessionStartLimit(
            total=total,
            remaining=max(0, remaining),
            reset_at=now + max(0, reset_after_ms) / 1000.0,
            max_concurrency=max_concurrency,
        )
    elif raw_limit is not None:
        raise ValueError("'session_start_limit' is not an object")
    return GatewayBotInfo(normalise_gateway_url(url), shards, limit)


def _retry_after(body: bytes, headers: Any) -> float:
    try:
        data = orjson.loads(body)
        if isinstance(data, dict) and data.get("retry_after") is not None:
            return max(0.0, float(data["retry_after"]))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:200] + ("…" if len(text) > 200 else "")


async def fetch_gateway_bot(
    session: aiohttp.ClientSession,
    rest_url: str,
    token: str,
    *,
    request_timeout: float = 10.0,
    attempts: int = 3,
    clock: Clock = SYSTEM_CLOCK,
) -> GatewayBotInfo:
    """``GET {rest_url}/gateway/bot``. Raises ``FatalGatewayError`` for a rejected token and
    ``GatewayError`` for anything else that stops us from learning where to connect."""
    url = rest_url.rstrip("/") + "/gateway/bot"
    headers = {"Authorization": f"Bot {token}", "User-Agent": USER_AGENT, "Accept": "application/json"}
    for attempt in range(1, attempts + 1):
        try:
            async with session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=request_timeout),
                allow_redirects=True,
            ) as response:
                status = response.status
                body = await response.read()
                response_headers = response.headers
        except TimeoutError:
            raise GatewayError(
                f"GET {url} timed out after {request_timeout:g} s: is the REST url right?"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc.os_error)
            raise GatewayError(f"cannot reach {url}: {reason}") from None
        except aiohttp.InvalidURL:
            raise GatewayError(f"the REST url {rest_url!r} is not a valid url") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"GET {url} failed: {type(exc).__name__}: {exc}") from None

        if status == 401:
            raise FatalGatewayError(
                "authentication",
                None,
                f"the bot token was rejected (HTTP 401 from GET {url}); check the token "
                "(it may have been reset) and try again",
            )
        if status == 429:
            wait = _retry_after(body, response_headers)
            if wait > MAX_RETRY_AFTER or attempt == attempts:
                raise GatewayError(
                    f"GET {url} is rate limited (HTTP 429) for {describe_duration(wait)}; try again later"
                )
            log.warning("GET %s rate limited: retrying in %s", url, describe_duration(wait))
            await clock.sleep(wait)
            continue
        if status >= 500 and attempt < attempts:
            log.warning("GET %s answered HTTP %d: retrying", url, status)
            await clock.sleep(min(2.0 ** (attempt - 1), 8.0))
            continue
        if not 200 <= status < 300:
            raise GatewayError(f"GET {url} answered HTTP {status}: {_excerpt(body) or 'no body'}")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(
                f"GET {url} returned malformed JSON: {_excerpt(body) or 'empty body'}"
            ) from None
        try:
            return parse_gateway_bot(decoded, clock.wall())
        except ValueError as exc:
            raise GatewayError(f"GET {url} returned an unusable answer: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
