"""Review: going over the daily session start limit costs what it costs on Discord.

Discord's docs (fact sheet §7, §14.4): on hitting the limit "all active sessions for the app will be
terminated, the bot token will be reset". A client that overspends its budget must see its whole fleet
go down and the old token refused everywhere, not just one refused IDENTIFY.
"""

from __future__ import annotations

import aiohttp
from rawclient import Closed

GUILDS = 1


async def test_over_the_daily_limit_every_session_ends_and_the_token_is_reset(sandbox_factory, raw):
    sandbox = await sandbox_factory(session_start_total=2, identify_window=0.0)
    first = await raw(sandbox)
    ready = await first.ready(sandbox.token, (0, 2), GUILDS)
    second = await raw(sandbox)
    await second.ready(sandbox.token, (1, 2), GUILDS)

    third = await raw(sandbox)
    await third.hello()
    await third.identify(sandbox.token, (0, 2), GUILDS)
    assert await third.expect_close() == 4004

    # The sessions that were fine are terminated too ...
    assert await first.expect_close() == 4004
    assert await second.expect_close() == 4004
    # ... cannot be resumed with the old token ...
    resumer = await raw(sandbox)
    await resumer.hello()
    await resumer.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": ready["d"]["session_id"], "seq": 1}}
    )
    assert await resumer.expect_close() == 4004
    # ... and REST refuses the old token as well.
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(sandbox.rest_url + "/gateway/bot", headers=headers) as response:
            assert response.status == 401
    stats = sandbox.stats()
    assert stats["token_reset"] is True
    assert not any(s["alive"] for s in stats["sessions"])


async def test_within_the_limit_nothing_is_reset(sandbox_factory, raw):
    sandbox = await sandbox_factory(session_start_total=2, identify_window=0.0)
    first = await raw(sandbox)
    await first.ready(sandbox.token, (0, 2), GUILDS)
    second = await raw(sandbox)
    await second.ready(sandbox.token, (1, 2), GUILDS)
    await first.heartbeat(1)
    try:
        await first.recv_until(lambda p: p["op"] == 11)
    except Closed as closed:  # pragma: no cover - the failure message
        raise AssertionError(f"a session within the budget was closed with {closed.code}") from None
    assert sandbox.stats()["token_reset"] is False
