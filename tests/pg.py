"""pytest fixtures for a real PostgreSQL 18 + pgvector server (no mock, no system package).

Wire it once for the whole suite with ``pytest_plugins = ["tests.pg"]`` in ``tests/conftest.py``; a module can also
bind the fixtures itself (``pg_server = tests.pg.pg_server``).

* ``pg_server`` (session): one embedded server per pytest process, i.e. one per xdist worker, each in its own
  temporary directory on its own free port, so workers share nothing and need no lock. It starts on first use (a
  session that requests no PostgreSQL fixture starts nothing) and stops, and its directory is removed, at the end.
* ``pg_url`` (function): a fresh database (pgvector installed) per test, dropped afterwards; its URL.

If the server cannot start, the fixtures raise ``EmbeddedPostgresError`` with the server log: the tests that use them
error and the run fails. Nothing here skips.

Server settings trade durability for speed (fsync, synchronous_commit and full_page_writes off): a crash loses the
data, which a test run throws away anyway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.embedded_pg import EmbeddedPostgres, start

TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def scratch_dir(prefix: str = "alexandria-pg-") -> Path:
    """A new temporary directory that the server's OS user can traverse (0711), for data directories.

    pytest's own ``tmp_path`` lies under ``/tmp/pytest-of-root`` (0700, re-restricted by every pytest run) when the
    tests run as root, which the unprivileged server user cannot enter. The caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL server (one per xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base = scratch_dir(f"alexandria-pg-{worker}-")
    try:
        server = start(base / "data", settings=TEST_SETTINGS)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """URL of a fresh database with pgvector installed, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:20]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)
