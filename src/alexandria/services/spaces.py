"""Spaces, groups and data source views (Dust's permission model, dust-behaviour.md §5.1 and §2.3)."""

from __future__ import annotations

from alexandria.domain.models import ApiKey, Workspace
from alexandria.storage.base import Store


class SpaceService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def key_group_ids(self, workspace: Workspace, key: ApiKey) -> frozenset[str]:
        """The groups a key acts with: every group of the workspace for a system key, else its own groups."""
        del workspace, key
        return frozenset()
