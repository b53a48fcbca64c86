"""Backends by database URL scheme, imported lazily."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from urllib.parse import urlparse

from alexandria.config import Settings
from alexandria.errors import InvalidRequest
from alexandria.storage.base import Store

# scheme -> "module:factory"; the factory takes (url, settings) and returns a Store.
BACKENDS: dict[str, str] = {
    "sqlite": "alexandria.storage.sqlite.store:open_sqlite_store",
    "postgresql": "alexandria.storage.postgres.store:open_postgres_store",
    "postgres": "alexandria.storage.postgres.store:open_postgres_store",
}


def open_store(settings: Settings) -> Store:
    url = settings.resolved_database_url()
    scheme = urlparse(url).scheme
    target = BACKENDS.get(scheme)
    if target is None:
        raise InvalidRequest(f"unsupported database URL scheme {scheme!r} (supported: {', '.join(BACKENDS)})")
    module_name, factory_name = target.split(":")
    factory: Callable[[str, Settings], Store] = getattr(import_module(module_name), factory_name)
    return factory(url, settings)
