"""The bytes a proxy client receives: dispatch frames split around their seq, and fixed control frames.

A dispatch is serialized once per event; each client only gets its own seq spliced in between the two
halves (``b"%b%d%b" % (prefix, seq, suffix)`` is the cheapest of the joins measured here).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

#: Op 9 with ``d=false``: the session is gone, IDENTIFY again. Discord sends ``t``/``s`` as null.
INVALID_SESSION_FRAME: Final = b'{"t":null,"s":null,"op":9,"d":false}'

_SUFFIX_HEAD: Final = b',"op":0,"d":'


def dispatch_parts(name: str, data: Any) -> tuple[bytes, bytes]:
    """``(prefix, suffix)`` of ``{"t":name,"s":<seq>,"op":0,"d":data}``; a frame is prefix + seq + suffix."""
    return b'{"t":' + orjson.dumps(name) + b',"s":', _SUFFIX_HEAD + orjson.dumps(data) + b"}"


def dispatch_frame(name: str, seq: int, data: Any) -> bytes:
    """One whole dispatch frame (for frames built for a single client: snapshot, routed chunks)."""
    prefix, suffix = dispatch_parts(name, data)
    return b"%b%d%b" % (prefix, seq, suffix)
