"""API keys: generated secrets, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

from alexandria.domain.models import ApiKey, Role, Workspace
from alexandria.errors import Unauthenticated
from alexandria.storage.base import Store

KEY_PREFIX = "sk-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self, workspace: Workspace, role: Role, name: str = "", data_source_id: int | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key (bound to one data source if ``data_source_id``); returns it and its secret (shown once,
        never stored)."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32).replace("-", "").replace("_", "")[:40]
        key = self.store.create_api_key(
            workspace.id, name or f"{role.value} key", role, hash_key(secret), secret[:7], data_source_id
        )
        return key, secret

    def authenticate(self, secret: str) -> ApiKey:
        key = self.store.get_api_key(hash_key(secret))
        if key is None or key.disabled:
            raise Unauthenticated("The API key provided is invalid or disabled.", code="invalid_api_key")
        return key
