"""Listen addresses of the servers shardtui runs itself (metrics, proxy): ``"HOST:PORT"`` parsing and a
bind probe, so a front end can name a busy port in one line before it takes the terminal."""

from __future__ import annotations

import errno
import socket


def split_listen(listen: str) -> tuple[str, int] | None:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:9100"``) -> (host, port); None when it is not that shape."""
    host, sep, port = listen.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def bind_reason(exc: OSError) -> str:
    """Why a bind failed, in an operator's words."""
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no local interface has that address"
    return exc.strerror or str(exc)


def probe_bind(host: str, port: int) -> OSError | None:
    """Bind every address ``host`` resolves to and let go at once; the error of the first that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return exc
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # The same option aiohttp's server sets, so a port in TIME_WAIT is not called busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return exc
    return None
