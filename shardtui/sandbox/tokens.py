"""Bot tokens shaped like Discord's: ``base64(bot_user_id).<timestamp part>.<hmac part>``.

Some clients decode the first part to learn the bot's id before connecting, so it must be real base64
of a snowflake.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import random
import secrets
import string

_URLSAFE = string.ascii_letters + string.digits + "-_"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_token(user_id: int, rng: random.Random | None = None) -> str:
    """A fresh token for ``user_id``. Without ``rng`` the secret parts come from ``secrets``."""
    if rng is None:
        stamp = secrets.token_bytes(4)
        tail = "".join(secrets.choice(_URLSAFE) for _ in range(38))
    else:
        stamp = bytes(rng.randrange(256) for _ in range(4))
        tail = "".join(rng.choice(_URLSAFE) for _ in range(38))
    return f"{_b64(str(user_id).encode())}.{_b64(stamp)}.{tail}"


def user_id_from_token(token: str) -> int | None:
    """The bot user id encoded in a token's first part, or None when it is not a Discord-shaped token."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None


def token_matches(expected: str, presented: object) -> bool:
    """Constant-time comparison; accepts the ``Bot `` prefix some libraries put in IDENTIFY."""
    if not isinstance(presented, str):
        return False
    if presented.startswith("Bot "):
        presented = presented[4:]
    return hmac.compare_digest(expected.encode(), presented.encode())
