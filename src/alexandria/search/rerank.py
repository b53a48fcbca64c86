"""Rerankers: score (query, passage) pairs after retrieval (Dify's ``reranking_enable`` / ``reranking_model``).

A :class:`Reranker` returns one relevance score in [0, 1] per text, in the order of the texts; :func:`rerank`
turns those scores into a ranking. :func:`build_reranker` makes the reranker the settings ask for:

* ``none`` (default): no reranking. No cross-encoder reranker ships its weights in a PyPI package (FlashRank and
  the like download them from a model hub at run time, which Alexandria does not do), so there is no built-in one.
* ``http``: any Jina/Cohere-style ``POST {base_url}/rerank`` endpoint (Jina AI, Cohere v2, Infinity, vLLM, ...):
  request ``{"model", "query", "documents", "top_n"}`` with a Bearer key, response
  ``{"results": [{"index", "relevance_score"}]}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import httpx

from alexandria.errors import AlexandriaError

if TYPE_CHECKING:
    from alexandria.config import Settings

__all__ = ["HTTPReranker", "RerankError", "Reranker", "build_reranker", "rerank"]

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RerankError(AlexandriaError):
    """The reranker could not score the texts (HTTP failure, bad response, bad configuration)."""

    code = "rerank_failed"


class Reranker(Protocol):
    """Scores how relevant each text is to a query."""

    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Relevance of each text to ``query``, in [0, 1], in the order of ``texts``."""
        ...


def rerank(reranker: Reranker, query: str, texts: Sequence[str], top_n: int | None = None) -> list[tuple[int, float]]:
    """``(index into texts, score)`` pairs, best first (ties keep the input order), at most ``top_n`` of them."""
    if top_n is not None and top_n < 0:
        raise ValueError("top_n must be >= 0")
    scores = reranker.score(query, texts)
    if len(scores) != len(texts):  # a Reranker that breaks its contract
        raise RerankError(f"reranker {reranker.name!r} returned {len(scores)} scores for {len(texts)} texts")
    ranked = sorted(enumerate(scores), key=lambda pair: -pair[1])
    return ranked if top_n is None else ranked[:top_n]


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class HTTPReranker:
    """Relevance scores from a Jina/Cohere-style ``POST {base_url}/rerank`` endpoint.

    ``base_url`` includes the API version (``https://api.jina.ai/v1``, ``https://api.cohere.com/v2``). Texts are
    sent in batches of at most ``batch_size`` documents with ``top_n`` = the batch size, so that every text gets a
    score; results are put back in input order by their ``index``. Scores must be in [0, 1] (what Jina, Cohere and
    the usual self-hosted servers return). 408, 429 and 5xx responses, timeouts and connection errors are retried
    ``max_retries`` times with exponential backoff starting at ``retry_backoff`` seconds; anything else raises
    :class:`RerankError`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        batch_size: int = 1000,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        if not base_url.strip():
            raise ValueError("base_url must not be empty")
        if not model.strip():
            raise ValueError("model must not be empty")
        if batch_size < 1 or max_retries < 0 or timeout <= 0 or retry_backoff < 0:
            raise ValueError("batch_size must be >= 1, max_retries >= 0, timeout > 0 and retry_backoff >= 0")
        self.name = name or model
        self.url = base_url.rstrip("/") + "/rerank"
        self._model = model
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("score() takes a sequence of texts, not a single string")
        out: list[float] = []
        for start in range(0, len(texts), self._batch_size):
            out.extend(self._score_batch(query, list(texts[start : start + self._batch_size])))
        return out

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TransportError as exc:  # timeouts, refused connections, dropped connections
                if attempt >= self._max_retries:
                    raise RerankError(
                        f"rerank request to {self.url} failed after {attempt + 1} attempt(s): {exc!r}"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in _RETRY_STATUS or attempt >= self._max_retries:
                    raise RerankError(
                        f"rerank request to {self.url} failed with HTTP {response.status_code}"
                        f" after {attempt + 1} attempt(s): {_excerpt(response.text)}"
                    )
            time.sleep(self._retry_backoff * (2**attempt))
            attempt += 1

    def _score_batch(self, query: str, batch: list[str]) -> list[float]:
        response = self._post({"model": self._model, "query": query, "documents": batch, "top_n": len(batch)})
        try:
            payload = response.json()
        except ValueError as exc:
            raise RerankError(f"rerank response is not JSON: {_excerpt(response.text)}") from exc
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise RerankError(f"rerank response has no 'results' list: {_excerpt(response.text)}")
        scores: list[float | None] = [None] * len(batch)
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            value = item.get("relevance_score") if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(batch):
                raise RerankError(f"rerank response has a bad 'index': {index!r} (for {len(batch)} documents)")
            if scores[index] is not None:
                raise RerankError(f"rerank response repeats index {index}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise RerankError(f"rerank response item {index} has no numeric 'relevance_score': {value!r}")
            if not 0.0 <= value <= 1.0:
                raise RerankError(
                    f"rerank response item {index} has relevance_score {value}, outside [0, 1]: the endpoint "
                    f"returns raw logits, not relevance probabilities"
                )
            scores[index] = float(value)
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise RerankError(
                f"rerank response scores {len(batch) - len(missing)} of {len(batch)} documents (missing index "
                f"{missing[0]}); the endpoint may cap top_n"
            )
        return [s for s in scores if s is not None]


def build_reranker(settings: Settings) -> Reranker | None:
    """The reranker ``settings.reranker`` names, or ``None`` for ``none``. Makes no request."""
    kind = settings.reranker
    if kind == "none":
        return None
    if kind == "http":
        return HTTPReranker(settings.rerank_base_url, settings.rerank_model, settings.rerank_api_key)
    raise RerankError(f"unknown reranker {kind!r}; expected 'none' or 'http'")  # pragma: no cover - Literal
