"""Embedders by name, loaded once per process on first use, each with its two lanes (see ``services/lanes.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from alexandria.config import Settings
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Embedder
from alexandria.services.lanes import LaneEmbedder, QueryCache, WriteLane

MINILM = "minilm"
MINILM_INT8 = "minilm-int8"
MULTILINGUAL_E5 = "multilingual-e5-small"  # optional extra: pip install 'alexandria[multilingual]'
OPENAI_PREFIX = "openai/"


# names a client may give for a local model (lower case): registry names and the models' published names
_ALIASES = {
    MINILM: MINILM,
    "all-minilm-l6-v2": MINILM,
    "sentence-transformers/all-minilm-l6-v2": MINILM,
    MINILM_INT8: MINILM_INT8,
    "sentence-transformers/all-minilm-l6-v2-int8": MINILM_INT8,
    MULTILINGUAL_E5: MULTILINGUAL_E5,
    "intfloat/multilingual-e5-small": MULTILINGUAL_E5,
    "intfloat/multilingual-e5-small-q4": MULTILINGUAL_E5,
}


@dataclass(frozen=True)
class _Lanes:
    model: Embedder  # metadata and tokenizer; its embed runs in the caller's thread
    writer: Embedder  # document embeddings
    query: Embedder  # query embeddings


class EmbedderRegistry:
    """Resolves a data source's embedder name (``minilm``, ``minilm-int8``, ``multilingual-e5-small``,
    ``openai/<model>``) to one shared
    instance and its lanes: :meth:`writer` for document embeddings (on the write lane), :meth:`query` for search
    queries (inline, on the local model's own small session). Tests may :meth:`register` instances of their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.write_lane = WriteLane(settings.embed_write_nice)
        self._lanes: dict[str, _Lanes] = {}
        self._lock = threading.Lock()

    def default_name(self) -> str:
        if self.settings.embedder == "openai":
            return OPENAI_PREFIX + self.settings.openai_model
        return MINILM_INT8 if self.settings.embedder_quantize else MINILM

    def optional_models(self) -> list[tuple[str, int]]:
        """``(published name, input limit in tokens)`` of the installed models a data source may choose besides
        the default, read without loading them (Dify's model list)."""
        from alexandria.ingest import multilingual_e5 as e5

        return [(e5.E5_NAME, e5.E5_MAX_TOKENS)] if e5.e5_available() else []

    def from_model_name(self, model: object) -> str | None:
        """The local embedder a client's model name denotes (a registry name or the model's published name, e.g.
        Dify's ``embedding_model``), or None for a name that is not one of ours."""
        if not isinstance(model, str):
            return None
        return _ALIASES.get(model.strip().lower())

    def register(self, name: str, embedder: Embedder, *, query: Embedder | None = None) -> None:
        """Use ``embedder`` for ``name``: its document embeddings go through the write lane, queries through
        ``query`` (default: the same instance, inline)."""
        with self._lock:
            self._lanes[name] = self._cached(_Lanes(embedder, self._on_lane(embedder), query or embedder))

    def get(self, name: str) -> Embedder:
        """The model itself: name, dimension, tokenizer (embed with :meth:`writer` or :meth:`query`)."""
        return self._resolve(name).model

    def writer(self, name: str) -> Embedder:
        """Document embeddings: run on the write lane, behind the searches."""
        return self._resolve(name).writer

    def query(self, name: str) -> Embedder:
        """Query embeddings: run inline in the caller's thread, never behind document batches."""
        return self._resolve(name).query

    def close(self) -> None:
        self.write_lane.close()

    def _on_lane(self, embedder: Embedder) -> Embedder:
        return LaneEmbedder(embedder, self.write_lane, self.settings.embed_batch_size)

    def _resolve(self, name: str) -> _Lanes:
        with self._lock:
            lanes = self._lanes.get(name)
            if lanes is None:
                lanes = self._cached(self._factory(name)())
                self._lanes[name] = lanes
            return lanes

    def _cached(self, lanes: _Lanes) -> _Lanes:
        size = self.settings.query_cache_size
        return replace(lanes, query=QueryCache(lanes.query, size)) if size > 0 else lanes

    def _factory(self, name: str) -> Callable[[], _Lanes]:
        from alexandria.ingest import embedders as impl

        s = self.settings
        if name in (MINILM, MINILM_INT8):

            def make_minilm() -> _Lanes:
                model = impl.load_minilm_model(quantize=name == MINILM_INT8)
                query = impl.MiniLMEmbedder(model=model, threads=s.query_embedder_threads)
                # built on the lane's thread, so that ONNX Runtime's pool threads inherit its lower priority
                docs = self.write_lane.run(
                    lambda: impl.MiniLMEmbedder(model=model, threads=s.embedder_threads, spinning=False)
                )
                return _Lanes(docs, self._on_lane(docs), query)

            return make_minilm
        if name == MULTILINGUAL_E5:
            from alexandria.ingest import multilingual_e5 as e5

            if not e5.e5_available():
                raise InvalidRequest(
                    f"embedder {name!r} is not installed on this server ({e5.E5_INSTALL})",
                    code="embedder_not_installed",
                )

            def make_e5() -> _Lanes:
                model = e5.load_e5_model()
                # queries: "query: " prefix, a small team inline; documents: "passage: ", on the lane's own team
                query = e5.E5Embedder(model, "query", threads=s.query_embedder_threads)
                docs = e5.E5Embedder(model, "passage", threads=s.embedder_threads or impl.default_threads())
                return _Lanes(docs, self._on_lane(docs), query)

            return make_e5
        if name.startswith(OPENAI_PREFIX):
            model_name = name[len(OPENAI_PREFIX) :]

            def make_http() -> _Lanes:
                tokenizer = impl.load_default_tokenizer()
                http = impl.OpenAIHTTPEmbedder(
                    base_url=s.openai_base_url,
                    model=model_name,
                    api_key=s.openai_api_key,
                    dim=s.openai_dim,
                    max_tokens=s.openai_max_tokens,
                    tokenizer=tokenizer,
                )
                return _Lanes(http, http, http)  # network-bound: no CPU to protect, no lane to serialize on

            return make_http
        raise InvalidRequest(f"unknown embedder {name!r}", code="unknown_embedder")
