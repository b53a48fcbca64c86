"""Embedders by name, loaded once per process on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable

from alexandria.config import Settings
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Embedder

MINILM = "minilm"
MINILM_INT8 = "minilm-int8"
OPENAI_PREFIX = "openai/"


class EmbedderRegistry:
    """Resolves a data source's embedder name (``minilm``, ``minilm-int8``, ``openai/<model>``) to one shared
    instance. Tests may :meth:`register` instances of their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._instances: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def default_name(self) -> str:
        if self.settings.embedder == "openai":
            return OPENAI_PREFIX + self.settings.openai_model
        return MINILM_INT8 if self.settings.embedder_quantize else MINILM

    def register(self, name: str, embedder: Embedder) -> None:
        with self._lock:
            self._instances[name] = embedder

    def get(self, name: str) -> Embedder:
        with self._lock:
            inst = self._instances.get(name)
            if inst is None:
                inst = self._factory(name)()
                self._instances[name] = inst
            return inst

    def _factory(self, name: str) -> Callable[[], Embedder]:
        from alexandria.ingest import embedders as impl

        s = self.settings
        if name in (MINILM, MINILM_INT8):
            return lambda: impl.load_default_embedder(threads=s.embedder_threads, quantize=name == MINILM_INT8)
        if name.startswith(OPENAI_PREFIX):
            model = name[len(OPENAI_PREFIX) :]

            def make() -> Embedder:
                tokenizer = impl.load_default_tokenizer()
                return impl.OpenAIHTTPEmbedder(
                    base_url=s.openai_base_url,
                    model=model,
                    api_key=s.openai_api_key,
                    dim=s.openai_dim,
                    max_tokens=s.openai_max_tokens,
                    tokenizer=tokenizer,
                )

            return make
        raise InvalidRequest(f"unknown embedder {name!r}", code="unknown_embedder")
