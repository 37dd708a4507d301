"""TLS like Discord's https:// and wss://: the sandbox serves it with a certificate made for the test
(trustme), and shards trust it only through ``gateway.ca_file``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from shardtui.cli import main
from shardtui.config import ConfigError, load_config
from shardtui.gateway.models import ConnectionStage, ShardId
from shardtui.headless import run_headless
from shardtui.runtime import Runtime
from shardtui.sandbox import Sandbox, SandboxSettings
from shardtui.sandbox.standalone import server_tls_context
from tests.conftest import FAST_SANDBOX_DEFAULTS


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA with a certificate for 127.0.0.1, plus an unrelated CA (the wrong one to trust)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {
        "ca": tmp_path / "ca.pem",
        "other_ca": tmp_path / "other-ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


async def _tls_sandbox(pki: dict[str, Path], **overrides: Any) -> Sandbox:
    sandbox = Sandbox(SandboxSettings(**{**FAST_SANDBOX_DEFAULTS, **overrides}))
    await sandbox.start(ssl_context=server_tls_context(str(pki["cert"]), str(pki["key"])))
    return sandbox


def _config(sandbox: Sandbox, ca_file: Path | None) -> Any:
    overrides = {
        "gateway.rest_url": sandbox.rest_url,
        "sandbox.token": sandbox.token,
        "gateway.identify_window": "0.1",
    }
    if ca_file is not None:
        overrides["gateway.ca_file"] = str(ca_file)
    return load_config(None, overrides, environ={})


async def _until(predicate: Any, what: str, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_shards_connect_resume_and_stop_over_tls_with_the_configured_ca(pki: dict[str, Path]) -> None:
    sandbox = await _tls_sandbox(pki, shards=2, max_concurrency=2)
    try:
        assert sandbox.rest_url.startswith("https://127.0.0.1:")
        assert sandbox.gateway_url.startswith("wss://127.0.0.1:")
        async with Runtime(_config(sandbox, pki["ca"])) as runtime:
            await runtime.start()
            manager = runtime.manager
            assert await manager.wait_until_connected(20)
            assert manager.gateway_url == sandbox.gateway_url
            shard0 = manager.runners[ShardId(0)]
            assert sandbox.inject("drop", 0) == 1
            await _until(
                lambda: shard0.resumes == 1 and shard0.stage is ConnectionStage.CONNECTED, "shard 0 resumed"
            )
        infos = list(manager.runners.values())
        assert [info.running for info in infos] == [False, False]
        stats = sandbox.stats()
        # One identify per shard: the dropped one came back over TLS by resuming its session.
        assert {k: v["identifies"] for k, v in stats["shards"].items()} == {"0": 1, "1": 1}
        assert shard0.identifies == 1
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith(("shard", "shardtui"))]
        assert leftover == []
    finally:
        await sandbox.stop()


@pytest.mark.parametrize("ca", ["none", "other_ca"])
async def test_an_untrusted_certificate_is_one_error_naming_the_host(
    pki: dict[str, Path], ca: str, tmp_path: Path
) -> None:
    sandbox = await _tls_sandbox(pki)
    try:
        out, err = io.StringIO(), io.StringIO()
        report_path = tmp_path / "report.json"
        config = _config(sandbox, None if ca == "none" else pki[ca])
        status = await run_headless(config, duration=20, report_path=str(report_path), out=out, err=err)
        assert status == 3
        report = json.loads(report_path.read_text())
        assert report["exit_reason"] == "a fatal gateway error stopped the shards"
        (fatal,) = report["fatal_errors"]
        assert f"https://127.0.0.1:{sandbox.port}/" in fatal["message"]
        assert "certificate verify failed" in fatal["message"]
        # REST refused the certificate: no shard was started, nothing is left running.
        assert report["shards"] == [] and sandbox.stats()["connections_total"] == 0
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith(("shard", "shardtui"))]
        assert leftover == []
    finally:
        await sandbox.stop()


def test_headless_cli_against_the_sandbox_command_over_tls(pki: dict[str, Path], tmp_path: Path) -> None:
    asyncio.run(_cli_run(pki, tmp_path))


async def _cli_run(pki: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SHARDTUI_GATEWAY_CA_FILE", None)
    config = tmp_path / "shards.toml"
    config.write_text("[sandbox]\nshards = 2\nmax_concurrency = 2\nidentify_window = 0.1\nevent_rate = 5.0\n")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "--config", str(config), "sandbox", "--port", "0",
        "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert server.stdout is not None
    try:
        banner: dict[str, str] = {}
        while "Bot token" not in banner:
            raw = await asyncio.wait_for(server.stdout.readline(), 30)
            assert raw, "the sandbox command ended early"
            name, _, value = raw.decode().partition(":")
            banner[name.strip()] = value.strip()
        rest_url, token = banner["REST base URL"], banner["Bot token"]
        assert rest_url.startswith("https://127.0.0.1:")
        assert banner["Gateway URL"].startswith("wss://127.0.0.1:")

        async def headless(*extra: str) -> tuple[int, str, str, dict[str, Any]]:
            report = tmp_path / "report.json"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shardtui", "--config", str(config), "--rest-url", rest_url,
                *extra, "run", "--headless", "--duration", "2", "--report", str(report),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
                env={**env, "SHARDTUI_SANDBOX_TOKEN": token},
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode(), json.loads(report.read_text())

        status, out, err, report = await headless("--ca-file", str(pki["ca"]))
        assert status == 0, err
        assert report["connected"] == 2 and report["never_connected"] == []
        assert token not in out + err

        status, out, err, report = await headless()
        assert status == 3, err
        port = rest_url.split(":")[2].split("/")[0]
        (line,) = [line for line in err.splitlines() if "ERROR" in line or "shardtui:" in line]
        assert f"https://127.0.0.1:{port}/" in line and "certificate verify failed" in line
        assert "Traceback" not in err and token not in out + err
        assert report["exit_status"] == 3
    finally:
        server.send_signal(2)
        _, server_err = await asyncio.wait_for(server.communicate(), 30)
    assert server.returncode == 0, server_err.decode()


@pytest.mark.parametrize("problem", ["missing", "not_pem", "directory"])
def test_an_unusable_ca_file_is_a_config_error(
    problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ca.pem"
    if problem == "not_pem":
        path.write_text("this is not a certificate\n")
    elif problem == "directory":
        path.mkdir()
    status = main(["--ca-file", str(path), "run", "--headless", "--duration", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "shardtui: command line --ca-file: gateway.ca_file: cannot use CA file " + str(path)
    ), err


def test_the_sandbox_command_refuses_an_unusable_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("nope\n")
    assert main(["sandbox", "--port", "0", "--tls-cert", str(cert)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot use the TLS certificate and key {cert}" in err
    assert main(["sandbox", "--port", "0", "--tls-key", str(cert)]) == 2
    assert capsys.readouterr().err == "shardtui: --tls-key needs --tls-cert\n"


def test_the_ca_file_can_come_from_the_environment(pki: dict[str, Path], tmp_path: Path) -> None:
    from shardtui.runtime import tls_context

    config = load_config(None, environ={"SHARDTUI_GATEWAY_CA_FILE": str(pki["ca"])})
    assert config.gateway.ca_file == str(pki["ca"])
    assert config.provenance["gateway.ca_file"] == "env SHARDTUI_GATEWAY_CA_FILE"
    context = tls_context(config)
    assert context is not None and context.get_ca_certs()
    missing = tmp_path / "gone.pem"
    config = load_config(None, environ={"SHARDTUI_GATEWAY_CA_FILE": str(missing)})
    with pytest.raises(ConfigError) as caught:
        tls_context(config)
    assert str(caught.value) == (
        "environment SHARDTUI_GATEWAY_CA_FILE: gateway.ca_file: "
        f"cannot use CA file {missing}: No such file or directory"
    )


async def test_an_untrusted_gateway_certificate_names_the_gateway_url(pki: dict[str, Path]) -> None:
    """The REST host and the gateway host can differ: a certificate refused on the WebSocket alone is
    logged with the gateway's url, and the token never appears."""
    from shardtui.gateway import GatewayIntents, ShardRunner, ShardRunnerInfo, ShardRunnerOptions
    from shardtui.gateway.models import ShardLogEvent

    class OpenGate:
        async def acquire(self, shard_id: ShardId) -> None:
            return None

    sandbox = await _tls_sandbox(pki)
    logs: list[str] = []
    try:
        options = ShardRunnerOptions(
            token=sandbox.token,
            gateway_url=sandbox.gateway_url,
            intents=GatewayIntents.default(),
            identify_gate=OpenGate(),
            connect_timeout=3.0,
            max_backoff=0.2,
        )
        sid = ShardId(0)
        info = ShardRunnerInfo(shard_id=sid, total=1)
        runner = ShardRunner(
            sid,
            1,
            options,
            info,
            asyncio.Queue(),
            lambda e: logs.append(e.message) if isinstance(e, ShardLogEvent) else None,
        )
        task = asyncio.create_task(runner.run())
        await _until(lambda: any("could not connect" in line for line in logs), "a failed connect")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await sandbox.stop()
    failed = [line for line in logs if "could not connect" in line]
    assert sandbox.gateway_url.startswith("wss://")
    assert any(
        sandbox.gateway_url.rstrip("/") in line and "CERTIFICATE_VERIFY_FAILED" in line for line in failed
    )
    assert not any(sandbox.token in line for line in logs)
    assert info.stage is not ConnectionStage.CONNECTED
