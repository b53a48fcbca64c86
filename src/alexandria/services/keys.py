"""API keys: generated secrets, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

from alexandria.domain.models import ApiKey, Role, Workspace
from alexandria.errors import Unauthenticated
from alexandria.storage.base import KeyStore

KEY_PREFIX = "sk-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, store: KeyStore) -> None:
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
        """The active key whose secret is ``secret``: every door (both dialects) authenticates through this. Raises
        ``Unauthenticated`` (``invalid_api_key``) for an unknown or disabled key; each dialect renders it its way."""
        key = self.store.get_api_key(hash_key(secret))
        if key is None or key.disabled:
            raise Unauthenticated("The API key provided is invalid or disabled.", code="invalid_api_key")
        return key

    def workspace_keys(self, workspace: Workspace) -> list[ApiKey]:
        """The workspace's keys, disabled ones included."""
        return self.store.list_api_keys(workspace.id)

    def get(self, workspace: Workspace, key_id: int) -> ApiKey | None:
        return next((k for k in self.store.list_api_keys(workspace.id) if k.id == key_id), None)

    def disable(self, workspace: Workspace, key_id: int) -> bool:
        """Disable key ``key_id`` of the workspace; False if it has no such active key."""
        return self.store.disable_api_key(workspace.id, key_id)
