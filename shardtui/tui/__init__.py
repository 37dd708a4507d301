"""The operator console: a Textual app over the gateway library (``ShardTUI`` in ``app.py``).

Nothing here speaks the gateway protocol; it reads ``ShardManager`` state and events and acts through
one ``ShardControl`` (``control.py``): ``ShardManager`` methods and each shard's ``ShardMessenger``
locally, the Redis fleet's commands in the fleet console.
"""
