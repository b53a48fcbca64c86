"""Conformance: the real `@dust-tt/client` npm package (pinned in dust_client/package.json) against a live
`alexandria serve` process with the real embedding model.

The test installs the SDK itself (`npm ci`, first run only), creates a workspace, a builder key, a system key and two
data sources with the CLI, then runs ``dust_client/run.mjs``, which prints one JSON report of named checks. Missing
``node``/``npm`` is a failure, not a skip: CI must provide them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live import CLI, live_server, run_cli

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "dust_client"
WORKSPACE = "conformance"


@dataclass(frozen=True)
class Server:
    base: str
    data: Path
    builder_key: str
    system_key: str
    ds_docs: str
    ds_tables: str
    view_setup: str


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Dust client conformance test needs Node.js >= 20 and npm")
    return path


def pinned_version() -> str:
    return str(json.loads((HERE / "package.json").read_text())["dependencies"]["@dust-tt/client"])


def installed_version() -> str | None:
    manifest = HERE / "node_modules" / "@dust-tt" / "client" / "package.json"
    return str(json.loads(manifest.read_text())["version"]) if manifest.exists() else None


@pytest.fixture(scope="module")
def node_modules() -> None:
    """`npm ci` from the committed lock file when the pinned SDK is not installed yet."""
    tool("node")
    npm = tool("npm")
    if installed_version() == pinned_version():
        return
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    assert installed_version() == pinned_version(), "npm ci did not install the pinned @dust-tt/client"


def create_custom_view(data: Path, ds: str, env: dict[str, str]) -> str:
    """An empty custom view of ``ds`` in a new open regular space, for the PATCH checks. Returns a line describing
    what happened; the script reports it when no custom view turns up."""
    common = ["--data-dir", str(data), "--workspace", WORKSPACE]
    steps = [
        ["spaces", "create", *common, "shared"],
        ["views", "create", *common, "--data-source", ds, "--space", "shared"],
    ]
    lines = []
    for args in steps:
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
        output = (done.stdout + done.stderr).strip()
        lines.append(f"`alexandria {' '.join(args)}` exited {done.returncode}: {output[-1500:]}")
        if done.returncode != 0:
            break
    return "\n".join(lines)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("dust-client") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    builder = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, env=env)
    system = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "--role", "system", env=env)
    ds_docs = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "docs", env=env)
    ds_tables = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", WORKSPACE, "tables", env=env)
    view_setup = create_custom_view(data, ds_docs, env)
    with live_server(data, env) as live:
        yield Server(live.base, data, builder, system, ds_docs, ds_tables, view_setup)


def describe(check: dict[str, Any]) -> str:
    return f"- {check['name']}:\n    " + json.dumps(check["details"], indent=2).replace("\n", "\n    ")


def test_dust_client_sdk_against_live_server(node_modules: None, server: Server) -> None:
    env = {
        **os.environ,
        "ALEX_BASE_URL": server.base,
        "ALEX_WORKSPACE": WORKSPACE,
        "ALEX_BUILDER_KEY": server.builder_key,
        "ALEX_SYSTEM_KEY": server.system_key,
        "ALEX_DS_DOCS": server.ds_docs,
        "ALEX_DS_TABLES": server.ds_tables,
        "ALEX_VIEW_SETUP": server.view_setup,
        "NODE_ENV": "development",
    }
    done = subprocess.run([tool("node"), "run.mjs"], cwd=HERE, capture_output=True, text=True, env=env, timeout=180,
                          check=False)  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"run.mjs printed no JSON report (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    if out := os.environ.get("ALEXANDRIA_CONFORMANCE_REPORT"):  # keep the whole report for inspection
        Path(out).write_text(done.stdout)
    assert report["sdk_version"] == pinned_version()
    assert report["checks"], "no checks ran"
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, (
        f"{len(failed)}/{len(report['checks'])} Dust SDK conformance checks failed "
        f"(@dust-tt/client {report['sdk_version']}, node {report['node_version']}):\n"
        + "\n".join(describe(c) for c in failed)
    )
    assert done.returncode == 0, done.stderr[-4000:]
