from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from alexandria.api.app import create_asgi
from alexandria.config import Settings
from alexandria.domain.models import DataSource, Role, Space, Workspace
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder

pytest_plugins = ["tests.pg"]

BACKENDS = ("sqlite", "postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=",".join(BACKENDS),
        help="Storage backends the contract tests run on (comma-separated; default: all).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): the storage backends a test module runs on (default: sqlite only)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use a store (through ``settings``) run once per backend their module opts into."""
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        wanted = marker.args if marker else ("sqlite",)
        allowed = set(str(metafunc.config.getoption("backends")).split(","))
        metafunc.parametrize("backend", [b for b in wanted if b in allowed])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The database URL of the backend under test (None: the embedded SQLite store in the data directory)."""
    if backend == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return None


@pytest.fixture
def settings(tmp_path: Path, backend_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=backend_url, max_document_mb=0.01, max_body_mb=0.05)


@pytest.fixture
def fake_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def core(settings: Settings, fake_embedder: HashingEmbedder) -> Iterator[Core]:
    c = Core(settings)
    c.embedders.register("fake", fake_embedder)
    yield c
    c.close()


@dataclass
class Tenant:
    workspace: Workspace
    space: Space
    ds: DataSource
    key: str
    system_key: str
    user_key: str


def make_tenant(core: Core, sid: str, ds_name: str = "docs") -> Tenant:
    ws, space = core.catalog.ensure_workspace(sid)
    ds = core.catalog.create_data_source(ws, ds_name, embedder="fake")
    _, key = core.keys.create(ws, Role.BUILDER)
    _, system_key = core.keys.create(ws, Role.SYSTEM)
    _, user_key = core.keys.create(ws, Role.USER)
    return Tenant(ws, space, ds, key, system_key, user_key)


@pytest.fixture
def tenant(core: Core) -> Tenant:
    return make_tenant(core, "w1")


@pytest.fixture
def other_tenant(core: Core) -> Tenant:
    return make_tenant(core, "w2")


@pytest.fixture
async def client(settings: Settings, core: Core) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_asgi(settings, core))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
