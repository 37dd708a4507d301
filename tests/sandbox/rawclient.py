"""A deliberately tiny gateway client for driving the sandbox in tests.

It is NOT the shardtui gateway library: it decodes zlib-stream / zstd-stream itself and exposes raw
payloads, so a protocol mistake in the library cannot hide the same mistake in the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import aiohttp
import zstandard

ZLIB_SUFFIX = b"\x00\x00\xff\xff"


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with {code}")
        self.code = code


class RawClient:
    def __init__(
        self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, compress: str | None
    ):
        self.http = http
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.decompressobj() if compress == "zlib-stream" else None
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if compress == "zstd-stream" else None
        self._buffer = b""
        self.received: list[dict[str, Any]] = []
        self.frame_types: list[aiohttp.WSMsgType] = []
        #: The reason text of the server's close frame, once one arrived.
        self.close_reason = ""

    @classmethod
    async def connect(
        cls, url: str, *, v: int | str = 10, compress: str | None = None, encoding: str = "json"
    ) -> RawClient:
        http = aiohttp.ClientSession()
        query = f"?v={v}&encoding={encoding}" + (f"&compress={compress}" if compress else "")
        try:
            ws = await http.ws_connect(url + query, max_msg_size=0, autoclose=True)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws, compress)

    async def recv(self, wait: float = 5.0) -> dict[str, Any]:
        """The next decoded payload; raises Closed(code) when the server closed or dropped."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), wait)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                self.close_reason = msg.extra or ""
                raise Closed(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise Closed(self.ws.close_code)
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise Closed(1006)
            self.frame_types.append(msg.type)
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = msg.data.encode()
            elif self._zlib is not None:
                self._buffer += msg.data
                if not self._buffer.endswith(ZLIB_SUFFIX):
                    continue
                data, self._buffer = self._zlib.decompress(self._buffer), b""
            elif self._zstd is not None:
                data = self._zstd.decompress(msg.data)
            else:
                data = msg.data
            payload = json.loads(data)
            self.received.append(payload)
            return payload

    async def recv_until(self, predicate: Any, wait: float = 5.0) -> list[dict[str, Any]]:
        """Payloads up to and including the first matching ``predicate`` (a dispatch name or callable)."""
        if isinstance(predicate, str):
            name = predicate
            predicate = lambda p: p.get("t") == name  # noqa: E731
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            payload = await self.recv(max(0.01, deadline - loop.time()))
            seen.append(payload)
            if predicate(payload):
                return seen

    async def expect_close(self, wait: float = 5.0) -> int | None:
        """Read until the connection ends; returns the close code (1006 = no close frame)."""
        try:
            while True:
                await self.recv(wait)
        except Closed as closed:
            return closed.code

    async def send(self, payload: Any, *, binary: bool = False) -> None:
        if isinstance(payload, (bytes, str)):
            data = payload
        else:
            data = json.dumps(payload)
        if binary:
            await self.ws.send_bytes(data.encode() if isinstance(data, str) else data)
        else:
            await self.ws.send_str(data if isinstance(data, str) else data.decode())

    async def hello(self) -> dict[str, Any]:
        payload = await self.recv()
        assert payload["op"] == 10, payload
        return payload

    async def identify(self, token: str, shard: Any = (0, 1), intents: Any = 513, **extra: Any) -> None:
        d: dict[str, Any] = {
            "token": token,
            "intents": intents,
            "properties": {"os": "linux", "browser": "rawclient", "device": "rawclient"},
            **extra,
        }
        if shard is not None:
            d["shard"] = list(shard) if isinstance(shard, tuple) else shard
        await self.send({"op": 2, "d": d})

    async def ready(
        self, token: str, shard: tuple[int, int] = (0, 1), intents: int = 513, **extra: Any
    ) -> dict:
        """HELLO, IDENTIFY, and the READY payload."""
        await self.hello()
        await self.identify(token, shard, intents, **extra)
        return (await self.recv_until("READY"))[-1]

    async def heartbeat(self, seq: int | None = None) -> None:
        await self.send({"op": 1, "d": seq})

    @property
    def last_seq(self) -> int | None:
        seqs = [p["s"] for p in self.received if p.get("s") is not None]
        return max(seqs) if seqs else None

    async def close(self, code: int = 4000) -> None:
        try:
            if not self.ws.closed:
                await asyncio.wait_for(self.ws.close(code=code), 2.0)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            await self.http.close()
