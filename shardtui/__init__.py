"""shardtui: an operator console and asyncio gateway library for sharded Discord bots."""

__version__ = "0.1.0"
