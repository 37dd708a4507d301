"""Logging set-up and token redaction.

The bot token is a secret: it must never reach a log line, a traceback or a report. Two layers keep it
out: every token the process knows is registered here (``register_secret``), and anything merely shaped
like a Discord bot token (base64 user id . timestamp . hmac) is masked too, so a token read from an
unexpected place (a URL, a payload echoed in an error) is caught as well.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from typing import IO, Any

REDACTED = "[REDACTED]"

# Discord bot tokens: base64url(user id) "." base64url(timestamp) "." base64url(hmac). Real ones are
# 24-28 . 6 . 27-38 characters; the bounds are loose so variants (and the sandbox's) are caught too.
TOKEN_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")

_secrets: set[str] = set()
_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(secret: str | None) -> None:
    """Redact ``secret`` from every log record and ``redact()`` result from now on."""
    global _secret_pattern
    if not secret or len(secret) < 4:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        # Longest first so a secret containing another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    global _secret_pattern
    with _lock:
        _secrets.clear()
        _secret_pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret and every token-shaped string replaced by ``[REDACTED]``."""
    if not text:
        return text
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return TOKEN_PATTERN.sub(REDACTED, text)


def redact_value(value: Any) -> Any:
    """Redact strings inside JSON-ready data (dicts, lists, strings); other values pass through."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def _scrub(record: logging.LogRecord) -> None:
    if getattr(record, "_shardtui_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not lose the record; show what we have
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info:
        # Format the traceback now, redacted, and drop exc_info so no later formatter re-renders the
        # original (exception messages often carry URLs, headers or payloads).
        text = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._shardtui_redacted = True


class RedactingFilter(logging.Filter):
    """Rewrites each record with secrets masked: message, args, exception and stack text. Never drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


_installed_factory = False


def install_redaction() -> None:
    """Redact every record the process creates.

    A filter on the root logger alone would miss records logged on child loggers (logger filters run
    only for records logged on that very logger), so the record factory scrubs each record as it is
    made; the filter is also put on the root logger and its handlers for records built by hand.
    """
    global _installed_factory
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not _installed_factory:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed_factory = True


LEVELS = ("debug", "info", "warning", "error", "critical")


def setup_logging(level: str = "warning", stream: IO[str] | None = None, file: str | None = None) -> None:
    """Log to ``stream`` (default stderr) or ``file`` at ``level``, with redaction installed.

    Replaces handlers a previous call installed, so the CLI can call it once per command.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_shardtui", False):
            root.removeHandler(handler)
            handler.close()
    handler: logging.Handler
    if file is not None:
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler._shardtui = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    install_redaction()
