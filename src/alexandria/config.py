"""Settings: one typed object built at start-up from flags and ``ALEXANDRIA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of Alexandria. Each field is documented; ``tests/unit/test_config.py`` checks the README lists
    them all (as ``ALEXANDRIA_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="ALEXANDRIA_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Directory holding the SQLite database and vector indexes.")
    database_url: str | None = Field(
        None, description="Store URL; default `sqlite:///<data_dir>/alexandria.db` (the embedded store)."
    )
    host: str = Field("127.0.0.1", description="Address `alexandria serve` listens on.")
    port: int = Field(8000, description="Port `alexandria serve` listens on.")
    mcp_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers `/mcp` accepts besides loopback names (e.g. `kb.example.com`, `kb.example.com:*`); "
        "JSON list in the environment.",
    )
    mcp_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origin headers `/mcp` accepts besides loopback origins (e.g. `https://kb.example.com`).",
    )

    embedder: Literal["minilm", "openai"] = Field(
        "minilm",
        description="Embedding model: `minilm` (all-MiniLM-L6-v2 on ONNX Runtime, local) or `openai` "
        "(any OpenAI-compatible `/v1/embeddings` endpoint).",
    )
    embedder_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime intra-op threads embedding documents (default: all cores)."
    )
    query_embedder_threads: int = Field(
        1,
        ge=1,
        description="ONNX Runtime intra-op threads of the separate session that embeds search queries, inline in "
        "each search's own thread (never queued behind document embeddings).",
    )
    query_cache_size: int = Field(
        1024,
        ge=0,
        description="Distinct search queries whose vectors each embedder remembers (least recently used out; 0: "
        "none): a repeated search skips the model.",
    )
    embed_write_nice: int = Field(
        5,
        ge=0,
        le=19,
        description="Nice increment of the one thread (and its ONNX Runtime threads) that embeds documents, so that "
        "searches get the CPU first during ingestion (Linux; 0: same priority).",
    )
    write_concurrency: int = Field(
        2,
        ge=1,
        description="Write requests that embed in the request (Dust sync upserts, Dify segment writes and status "
        "changes) served at once, on their own threads (searches keep theirs); the others wait for a turn.",
    )
    write_queue: int = Field(
        16,
        ge=0,
        description="Such write requests allowed to wait for a turn; beyond, 429 with `Retry-After` in the "
        "dialect's envelope instead of unbounded queueing.",
    )
    embedder_quantize: bool = Field(
        False, description="Run the local model with dynamic int8 quantization (faster, slightly less accurate)."
    )
    embed_batch_size: int = Field(32, description="Texts per embedding batch.")
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="Base URL (including `/v1`) of the OpenAI-compatible embedder."
    )
    openai_api_key: str | None = Field(None, description="Bearer key for the OpenAI-compatible embedder.")
    openai_model: str = Field("text-embedding-3-small", description="Model name sent to the HTTP embedder.")
    openai_dim: int = Field(1536, description="Dimension of the HTTP embedder's vectors.")
    openai_max_tokens: int = Field(
        512, description="Chunk size (tokens) for data sources created with the HTTP embedder."
    )

    chunk_size: int | None = Field(
        None,
        description="Default chunk size in model tokens for new data sources (default: the model's own input "
        "limit, 254 word pieces for all-MiniLM-L6-v2). Stored per data source.",
    )
    max_document_mb: float = Field(
        10.0, description="Largest document text accepted (MiB of characters); larger upserts get a quota error."
    )
    upserts_per_minute: int = Field(
        120, description="Document and folder upserts allowed per minute per workspace (system keys exempt; 0: off)."
    )
    max_body_mb: float = Field(16.0, description="Largest HTTP request body (MiB); larger requests get 413.")

    hybrid_alpha: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Weight of the vector signal in hybrid search (convex combination of normalised scores).",
    )
    fusion: Literal["convex", "rrf"] = Field(
        "convex", description="Hybrid fusion: `convex` (normalised score combination) or `rrf` (reciprocal rank)."
    )
    hybrid_candidates: int = Field(100, description="Candidates taken from each signal before hybrid fusion.")
    exact_search_max_candidates: int = Field(
        20000,
        description="Filtered vector searches whose candidate set has at most this many chunks use exact search "
        "instead of HNSW.",
    )
    hnsw_connectivity: int = Field(16, description="HNSW graph degree (M).")
    hnsw_expansion_add: int = Field(128, description="HNSW efConstruction.")
    hnsw_expansion_search: int = Field(
        128, description="HNSW ef at query time, up to 25,000 vectors; grows as the size to the power 0.7 beyond."
    )

    sql_timeout_ms: int = Field(
        10000,
        ge=1,
        description="Time limit of one SQL query over tables (`query_tables`), in milliseconds, counted from the "
        "request's arrival (waiting for a worker included).",
    )
    sql_max_rows: int = Field(
        2048, ge=1, description="Most result rows an SQL query over tables may return (more: `too_many_result_rows`)."
    )
    sql_cached_databases: int = Field(
        8, ge=1, description="In-memory databases built for SQL over tables kept for reuse (least recently used go)."
    )
    sql_workers: int = Field(
        4,
        ge=1,
        description="SQL queries over tables run at once, all workspaces together, on threads of their own (never "
        "the server's request threads).",
    )
    sql_workers_per_workspace: int = Field(
        2, ge=1, description="SQL queries over tables of one workspace run at once (at most `ALEXANDRIA_SQL_WORKERS`)."
    )
    sql_queue: int = Field(
        64,
        ge=0,
        description="SQL queries over tables that may wait for a worker, all workspaces together; past that (or past "
        "`ALEXANDRIA_SQL_QUEUE_PER_WORKSPACE`) a query is refused at once with 429 `rate_limit_error` and "
        "`Retry-After`. Time spent waiting counts towards `ALEXANDRIA_SQL_TIMEOUT_MS`.",
    )
    sql_queue_per_workspace: int = Field(
        8,
        ge=0,
        description="SQL queries over tables of one workspace that may wait for a worker (see `ALEXANDRIA_SQL_QUEUE`).",
    )
    sql_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU niceness of the SQL worker threads (Linux; 0: none), so that runaway queries take only the "
        "CPU that searches and writes leave.",
    )

    workers: int = Field(
        1, ge=0, description="Indexing worker threads `alexandria serve` runs for async upserts (0: none in process)."
    )
    job_batch_size: int = Field(
        32, ge=1, description="Jobs a worker claims at once (their chunks are embedded together)."
    )
    job_lease_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a claimed job stays leased to its worker (renewed while it runs); a job whose "
        "lease expires is claimed again.",
    )
    job_max_attempts: int = Field(
        5, ge=1, description="Attempts before a job is given up and its document marked `failed` with the error."
    )
    job_retry_base_s: float = Field(
        2.0, ge=0, description="Backoff before the first retry of a failed job; doubles at each attempt."
    )
    job_retry_max_s: float = Field(300.0, ge=0, description="Longest backoff between two attempts of a job.")
    job_poll_interval_s: float = Field(
        1.0, gt=0, description="How often idle workers look for jobs queued by other processes or due for retry."
    )
    job_retention_h: float = Field(24.0, ge=0, description="Hours finished (done or failed) jobs are kept.")

    reranker: Literal["none", "http"] = Field(
        "none",
        description="Reranker applied when a search asks for reranking: `none` (no built-in cross-encoder ships on "
        "PyPI) or `http` (a Jina/Cohere-style `POST {base_url}/rerank` endpoint).",
    )
    rerank_base_url: str = Field(
        "https://api.jina.ai/v1", description="Base URL (including the API version) of the HTTP reranker."
    )
    rerank_api_key: str | None = Field(None, description="Bearer key for the HTTP reranker.")
    rerank_model: str = Field("jina-reranker-v2-base-multilingual", description="Model name sent to the HTTP reranker.")

    upload_file_size_limit_mb: float = Field(
        15.0, gt=0, description="Largest file accepted by Dify's create/update-by-file (MB); larger files get 413."
    )
    dify_max_segmentation_tokens: int = Field(
        4000,
        ge=50,
        description="Largest custom `max_tokens` (characters) of a Dify process rule "
        "(Dify's INDEXING_MAX_SEGMENTATION_TOKENS_LENGTH).",
    )
    dify_max_segments_per_request: int = Field(
        1000, ge=1, description="Most segments one Dify `POST .../segments` request may add."
    )

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'alexandria.db'}"
