"""The operator console: a Textual app over the gateway library (``ShardTUI`` in ``app.py``).

Nothing here speaks the gateway protocol; it reads ``ShardManager`` state and events and acts through
``ShardManager`` methods and each shard's ``ShardMessenger``.
"""
