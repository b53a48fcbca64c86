"""PostgreSQL + pgvector storage backend (selected by a ``postgresql://`` database URL)."""
