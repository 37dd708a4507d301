"""The bot token never reaches a log line, a traceback or a repr."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from shardtui.config import load_config
from shardtui.logsafe import (
    REDACTED,
    RedactingFilter,
    forget_secrets,
    redact,
    redact_value,
    register_secret,
    setup_logging,
)

# Shaped like a real bot token: base64(user id) . base64(timestamp) . hmac.
DISCORD_SHAPED = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJk1a.abcdefghijklmnopqrstuvwxyz0123456789AB"
# Not token-shaped at all: only registration can catch it.
PLAIN_SECRET = "hunter2-plain-secret"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_level = root.level
    setup_logging("debug", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_shardtui", False):
            root.removeHandler(handler)
    root.setLevel(saved_level)
    forget_secrets()


def test_redact_masks_registered_and_token_shaped_strings() -> None:
    register_secret(PLAIN_SECRET)
    try:
        text = f"auth {PLAIN_SECRET} then Bot {DISCORD_SHAPED} in a url ?token={DISCORD_SHAPED}&x=1"
        out = redact(text)
        assert PLAIN_SECRET not in out and DISCORD_SHAPED not in out
        assert out == f"auth {REDACTED} then Bot {REDACTED} in a url ?token={REDACTED}&x=1"
        # Ordinary dotted text is left alone.
        assert (
            redact("shardtui.gateway.runner v1.2.3 example.com")
            == "shardtui.gateway.runner v1.2.3 example.com"
        )
    finally:
        forget_secrets()


def test_sandbox_tokens_are_token_shaped() -> None:
    from shardtui.sandbox.tokens import make_token

    token = make_token(1098765432109876543)
    assert redact(f"token={token}") == f"token={REDACTED}"


def test_log_message_and_args_are_redacted(log_stream: io.StringIO) -> None:
    register_secret(PLAIN_SECRET)
    logger = logging.getLogger("shardtui.gateway.runner")  # a child logger: root filters alone miss it
    logger.info("identify with %s", PLAIN_SECRET)
    logger.warning("payload %r", {"token": DISCORD_SHAPED})
    logger.error(f"formatted in the message {DISCORD_SHAPED}")
    text = log_stream.getvalue()
    assert PLAIN_SECRET not in text and DISCORD_SHAPED not in text
    assert text.count(REDACTED) == 3
    assert "identify with [REDACTED]" in text


def test_exception_text_is_redacted(log_stream: io.StringIO) -> None:
    register_secret(PLAIN_SECRET)
    try:
        raise ConnectionError(f"401 for Authorization: Bot {PLAIN_SECRET}")
    except ConnectionError:
        logging.getLogger("shardtui.gateway.http").exception("request failed")
    text = log_stream.getvalue()
    assert "Traceback" in text and "ConnectionError" in text
    assert PLAIN_SECRET not in text
    assert f"Authorization: Bot {REDACTED}" in text


def test_filter_redacts_records_built_by_hand() -> None:
    register_secret(PLAIN_SECRET)
    try:
        record = logging.LogRecord("n", logging.INFO, __file__, 1, "tok=%s", (PLAIN_SECRET,), None)
        record.__dict__.pop("_shardtui_redacted", None)
        assert RedactingFilter().filter(record) is True
        assert record.getMessage() == f"tok={REDACTED}"
    finally:
        forget_secrets()


def test_caplog_sees_redacted_records(caplog: pytest.LogCaptureFixture, log_stream: io.StringIO) -> None:
    register_secret(PLAIN_SECRET)
    with caplog.at_level(logging.INFO):
        logging.getLogger("shardtui.any").info("secret %s", PLAIN_SECRET)
    assert PLAIN_SECRET not in caplog.text
    assert "secret [REDACTED]" in caplog.text


def test_redact_value_walks_json() -> None:
    register_secret(PLAIN_SECRET)
    try:
        data = {"a": [PLAIN_SECRET, 1, None], "b": {"c": f"x {DISCORD_SHAPED}"}, "n": 3}
        assert redact_value(data) == {"a": [REDACTED, 1, None], "b": {"c": f"x {REDACTED}"}, "n": 3}
    finally:
        forget_secrets()


def test_config_repr_hides_sandbox_token() -> None:
    config = load_config(None, {"sandbox.token": DISCORD_SHAPED})
    assert DISCORD_SHAPED not in repr(config)
    assert DISCORD_SHAPED not in repr(config.sandbox)


def test_manager_and_runner_options_reprs_hide_the_token() -> None:
    from shardtui.gateway.protocol import GatewayIntents

    manager = pytest.importorskip("shardtui.gateway.manager")
    options = manager.ShardManagerOptions(
        token=DISCORD_SHAPED, intents=GatewayIntents.default(), rest_url="http://127.0.0.1:1/api/v10"
    )
    assert DISCORD_SHAPED not in repr(options)
    runner = pytest.importorskip("shardtui.gateway.runner")
    from shardtui.gateway.gate import InMemoryIdentifyGate

    run_options = runner.ShardRunnerOptions(
        token=DISCORD_SHAPED,
        gateway_url="ws://127.0.0.1:1/",
        intents=GatewayIntents.default(),
        identify_gate=InMemoryIdentifyGate(),
    )
    assert DISCORD_SHAPED not in repr(run_options)
