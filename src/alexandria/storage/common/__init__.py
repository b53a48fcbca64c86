"""Row storage written once for both engines, over :class:`alexandria.storage.database.Database` and the per-engine
:class:`alexandria.storage.chunk_index.ChunkIndex`."""
