"""Transitional: the helpers moved to ``tests/support`` (``support.manager.options_for``,
``support.waiting.eventually``). Kept so test files written against the old name in parallel
branches still import; new tests import from ``support`` directly. Delete once nothing imports it."""

from __future__ import annotations

from support.manager import options_for
from support.waiting import eventually

__all__ = ["eventually", "options_for"]
