"""``[cluster]``: parsed into ClusterConfig, every mistake named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from shardtui.config import ClusterConfig, ConfigError, describe_redis_url, parse_cluster_config


def parse(text: str) -> ClusterConfig | None:
    return parse_cluster_config(tomllib.loads(text).get("cluster"), "shards.toml")


def test_no_cluster_table_means_no_fleet():
    assert parse("[gateway]\nmode = 'sandbox'\n") is None


def test_a_full_cluster_table():
    config = parse(
        """
        [cluster]
        redis_url = "redis://:s3cret@10.0.0.5:6380/2"
        name = "worker-1"
        cluster = "mybot"
        shard_range = "8-15"
        heartbeat_interval = 0.5
        heartbeat_ttl = 3
        command_timeout = 2
        """
    )
    assert config is not None
    assert (config.name, config.cluster, config.shard_range) == ("worker-1", "mybot", (8, 15))
    assert (config.heartbeat_interval, config.heartbeat_ttl, config.command_timeout) == (0.5, 3.0, 2.0)
    assert "s3cret" not in repr(config)
    assert describe_redis_url(config.redis_url) == "redis://10.0.0.5:6380/2"


def test_defaults_name_the_process_after_host_and_pid():
    config = parse('[cluster]\nredis_url = "redis://127.0.0.1"\nshard_range = [0, 3]\n')
    assert config is not None
    assert config.shard_range == (0, 3)
    assert config.name.endswith(f"-{os.getpid()}")
    assert config.cluster == "shardtui"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "name = 'x'",
            'shards.toml: cluster.redis_url: expected a Redis URL such as "redis://127.0.0.1:6379/0", '
            "found none",
        ),
        (
            "redis_url = 6379",
            "shards.toml: cluster.redis_url: expected a non-empty string, found integer 6379",
        ),
        (
            "redis_url = 'http://x'",
            "shards.toml: cluster: redis_url must start with redis://, rediss:// or unix://, got http",
        ),
        (
            "redis_url = 'redis://x'\nshard_range = '7-3'",
            "shards.toml: cluster.shard_range: expected first <= last, found 7-3",
        ),
        (
            "redis_url = 'redis://x'\nshard_range = 'some'",
            "shards.toml: cluster.shard_range: expected a shard range "
            '"first-last" (e.g. "0-7") or [first, last], found string "some"',
        ),
        (
            # The one shard-range parser ([gateway] uses it too) names a negative id as such.
            "redis_url = 'redis://x'\nshard_range = [-1, 3]",
            "shards.toml: cluster.shard_range: expected non-negative shard ids, found array [-1, 3]",
        ),
        (
            "redis_url = 'redis://x'\nheartbeat_ttl = 0.5",
            "shards.toml: cluster: heartbeat_ttl (0.5) must be longer "
            "than heartbeat_interval (1.0), or a live process would flicker as lost",
        ),
        (
            "redis_url = 'redis://x'\nname = 'has space'",
            "shards.toml: cluster: process name must be 1-64 of A-Z a-z 0-9 _ . : @ -, got 'has space'",
        ),
        (
            "redis_url = 'redis://x'\nredis = 1",
            "shards.toml: cluster.redis: expected a key of [cluster] (redis_url, "
            "name, cluster, shard_range, heartbeat_interval, heartbeat_ttl, command_timeout), "
            'found unknown key "redis" (did you mean "redis_url"?)',
        ),
        (
            "redis_url = 'redis://x'\ncommand_timeout = true",
            "shards.toml: cluster.command_timeout: expected a positive number of seconds, found boolean true",
        ),
    ],
)
def test_mistakes_are_named(body: str, message: str):
    with pytest.raises(ConfigError) as caught:
        parse(f"[cluster]\n{body}\n")
    assert str(caught.value) == message


def test_the_gateway_library_never_imports_redis():
    # One-process bots must not need the redis package: only shardtui.fleet may import it.
    code = (
        "import sys, shardtui.gateway, shardtui.gateway.manager, shardtui.gateway.runner, shardtui.config; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_loading_a_fleet_config_imports_neither_redis_nor_the_fleet_nor_the_sandbox_server(tmp_path):
    # [cluster] is plain settings: the fleet (and redis) load only when a fleet starts, and the
    # [sandbox] section (the sandbox's own settings type) does not bring up its aiohttp server.
    path = tmp_path / "shards.toml"
    path.write_text(
        '[gateway]\nshards = 8\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\nshard_range = "0-3"\n'
        '[[sandbox.faults]]\nkind = "close"\nevery = 2\ncode = 4000\n'
    )
    code = (
        "import sys\n"
        "from shardtui.config import format_config, load_config\n"
        f"config = load_config({str(path)!r}, environ={{}})\n"
        "format_config(config, environ={})\n"
        "print(config.cluster.shard_range, sorted(m for m in ('redis', 'shardtui.fleet', 'aiohttp',"
        " 'shardtui.sandbox.server') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "(0, 3) []"
