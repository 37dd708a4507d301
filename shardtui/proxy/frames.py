"""The bytes a proxy client receives: dispatch frames split around their seq, and fixed control frames.

A dispatch is serialized once per event; each client only gets its own seq spliced in: one
``FRAME_FORMAT % (head, seq, body)`` per client (a single %-join was the cheapest measured here).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

#: Op 9 with ``d=false``: the session is gone, IDENTIFY again. Discord sends ``t``/``s`` as null.
INVALID_SESSION_FRAME: Final = b'{"t":null,"s":null,"op":9,"d":false}'

#: A client's frame from a dispatch's head and body and its own seq. One join, no intermediate bytes.
FRAME_FORMAT: Final = b'%b%d,"op":0,"d":%b}'

#: ``{"t":NAME,"s":`` per event name: a gateway has a few dozen names; past this many, build each time.
_MAX_HEADS: Final = 512
_heads: dict[str, bytes] = {}


def dispatch_head(name: str) -> bytes:
    """``{"t":name,"s":`` — the part of a client's frame before its seq."""
    head = _heads.get(name)
    if head is None:
        head = b'{"t":' + orjson.dumps(name) + b',"s":'
        if len(_heads) < _MAX_HEADS:
            _heads[name] = head
    return head


def dispatch_parts(name: str, data: Any) -> tuple[bytes, bytes]:
    """``(head, body)`` of a dispatch; a client's frame is ``FRAME_FORMAT % (head, seq, body)``, i.e.
    ``{"t":name,"s":<seq>,"op":0,"d":data}`` in compact JSON."""
    return dispatch_head(name), orjson.dumps(data)


def dispatch_frame(name: str, seq: int, data: Any) -> bytes:
    """One whole dispatch frame (for frames built for a single client: the snapshot)."""
    head, body = dispatch_parts(name, data)
    return FRAME_FORMAT % (head, seq, body)
