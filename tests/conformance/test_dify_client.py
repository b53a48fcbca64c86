"""Conformance: real third-party Dify Knowledge API clients from PyPI against a live `alexandria serve` process with the
real embedding model.

Each client is pinned, with its whole dependency closure, in ``dify_client/requirements-<client>.txt`` and installed
by this test into its own venv ``dify_client/.venv-<client>`` (created on first run, re-installed when an installed
version differs from a pin), so its dependencies never meet ours. The test creates a workspace key with the CLI,
starts the server on a free port with a fresh data dir, and runs ``dify_client/run_<client>.py`` with the client's
python; the script drives the client through a whole Knowledge API story and prints one JSON report of named checks
(last line of stdout). A failed install is a failure, not a skip: CI must reach PyPI.

- ``dify-oapi2`` (nodite/dify-oapi2): typed calls for datasets, documents, segments, child chunks, retrieval, tags.
- ``dify-oapi`` 0.0.14 (QiMington/dify-oapi): the deprecated underscore paths and ``/hit-testing``.
- ``dify-client``: Dify's own SDK (langgenius/dify ``sdks/python-client``, module ``dify_client``, from PyPI as
  ``dify-python-sdk``): every knowledge method of its ``KnowledgeBaseClient``.

``ALEXANDRIA_CONFORMANCE_REPORT=PATH`` keeps each whole report as ``PATH.<client>.json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live import live_server, run_cli

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "dify_client"
WORKSPACE = "dify-conformance"
CLIENTS = {"dify-oapi2": "run_dify_oapi2.py", "dify-oapi": "run_dify_oapi.py", "dify-client": "run_dify_client.py"}
PACKAGE = {"dify-client": "dify-python-sdk"}  # the PyPI distribution of a client named otherwise
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


@dataclass(frozen=True)
class Server:
    base: str
    data: Path
    key: str
    log: Path


# -- the clients' venvs ------------------------------------------------------------------------------------------


def requirements(client: str) -> Path:
    return HERE / f"requirements-{client}.txt"


def pins(client: str) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` line (names normalised as pip does)."""
    found = {}
    for line in requirements(client).read_text().splitlines():
        if m := PIN.match(line):
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    assert found, f"no pins in {requirements(client)}"
    return found


def venv_python(client: str) -> Path:
    venv = HERE / f".venv-{client}"
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed(python: Path, names: list[str]) -> dict[str, str | None] | None:
    """Installed versions of ``names`` in the venv of ``python`` (None for a missing one); None when the venv's
    python does not run."""
    probe = (
        "import json, sys\nfrom importlib import metadata\nout = {}\nfor n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n    except metadata.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    if not python.exists():
        return None
    try:
        done = subprocess.run([python, "-c", probe, *names], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return dict(json.loads(done.stdout))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def ensure_client(client: str) -> Path:
    """The python of the client's venv with exactly the pinned versions, (re)creating and installing as needed."""
    want = pins(client)
    python = venv_python(client)
    have = installed(python, list(want))
    if have == want:
        return python
    if have is None:  # no venv, or a broken one
        done = subprocess.run([sys.executable, "-m", "venv", "--clear", str(python.parent.parent)],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"could not create the {client} venv:\n{done.stdout}\n{done.stderr}")
    install = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "-r", str(requirements(client))]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True, timeout=900, env=clean_env(), check=False)
    if done.returncode != 0:
        pytest.fail(f"pip install -r {requirements(client).name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    have = installed(python, list(want))
    if have != want:
        diff = {n: (v, (have or {}).get(n)) for n, v in want.items() if (have or {}).get(n) != v}
        pytest.fail(f"{client} venv does not hold the pinned versions after install (pin, installed): {diff}")
    return python


# -- the server --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("dify-client") / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", WORKSPACE, env=env)
    with live_server(data, env) as live:
        yield Server(live.base, data, key, live.log_path)


# -- the test ----------------------------------------------------------------------------------------------------


def describe(check: dict[str, Any]) -> str:
    context = check.get("context") or {}
    lines = [f"- {check['name']}: {str(check.get('reason', ''))[:600]}"]
    for key in ("status", "body", "client_log", "client_workaround"):
        if key in context:
            lines.append(f"    {key}: {json.dumps(context[key])[:400]}")
    return "\n".join(lines)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_dify_client_against_live_server(client: str, server: Server) -> None:
    python = ensure_client(client)
    env = clean_env(ALEX_BASE_URL=server.base, ALEX_DIFY_KEY=server.key)
    try:
        done = subprocess.run([str(python), CLIENTS[client]], cwd=HERE, capture_output=True, text=True, env=env,
                              timeout=900, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")
        pytest.fail(f"{CLIENTS[client]} ran past 900 s:\n{stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"{CLIENTS[client]} printed no JSON report (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                    f"{done.stderr[-4000:]}")  # fmt: skip
    if out := os.environ.get("ALEXANDRIA_CONFORMANCE_REPORT"):
        Path(f"{out}.{client}.json").write_text(json.dumps(report, indent=2))
    assert report["client"] == client
    assert report["client_version"] == pins(client)[PACKAGE.get(client, client)], "the script ran another version"
    checks = report["checks"]
    assert checks, "no checks ran"
    failed = [c for c in checks if not c["ok"] and not str(c.get("reason", "")).startswith("not run:")]
    skipped = [c["name"] for c in checks if not c["ok"] and str(c.get("reason", "")).startswith("not run:")]
    if failed or skipped:
        server_log = server.log.read_text(errors="replace")[-3000:] if server.log.exists() else ""
        pytest.fail(
            f"{len(failed) + len(skipped)}/{len(checks)} Dify client conformance checks failed "
            f"({client} {report['client_version']}, python {report['python']}):\n"
            + "\n".join(describe(c) for c in failed)
            + (f"\nnot run, because a check they need failed: {', '.join(skipped)}" if skipped else "")
            + (f"\nserver log (tail):\n{server_log}" if server_log else "")
        )
    assert done.returncode == 0, done.stderr[-4000:]
