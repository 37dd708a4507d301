"""Helpers shared by the test suite, imported as ``support.<module>`` (``tests/`` is on the path):

- ``waiting``: ``wait_until`` / ``eventually`` — poll a predicate in plain asyncio, fail naming it;
- ``tui``: ``fast_config`` and the pilot's ``wait_until`` for console tests;
- ``fixed_fleet``: a frozen fleet behind the manager surface the console reads (snapshots);
- ``manager``: ``options_for`` (manager options for a sandbox);
- ``shard``: the sans-I/O Shard in tests: ``Clock``, ``make_shard``, payloads, ``connect``, ``identified``;
- ``fleet``: start / stop a fleet member, wait for a fleet snapshot;
- ``zero_downtime``: traffic with Discord identities and a recording handler;
- ``redis_server``: a ``redis-server`` of the suite's own on a free port.
"""
