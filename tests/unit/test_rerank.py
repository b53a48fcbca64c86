"""Rerankers: HTTPReranker against a real Jina/Cohere-style HTTP server on 127.0.0.1 (stdlib, in a thread)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alexandria.config import Settings
from alexandria.errors import AlexandriaError
from alexandria.search.rerank import HTTPReranker, Reranker, RerankError, build_reranker, rerank


def relevance(query: str, document: str) -> float:
    """Deterministic score in [0, 1]: the share of the query's words found in the document."""
    q = set(re.findall(r"\w+", query.lower()))
    d = set(re.findall(r"\w+", document.lower()))
    return round(len(q & d) / len(q), 6) if q else 0.0


@dataclass
class Behaviour:
    """What the fake server does; tests mutate it."""

    fail_statuses: list[int] = field(default_factory=list)  # statuses to return first, one per request
    delays: list[float] = field(default_factory=list)  # seconds to stall before answering, one per request
    raw_body: bytes | None = None  # return this body verbatim (status 200)
    cap_top_n: int | None = None  # return at most this many results whatever top_n says
    score_offset: float = 0.0  # added to every score (to fake an endpoint returning logits)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                server.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                b = server.behaviour
                if b.delays:
                    time.sleep(b.delays.pop(0))
                if b.fail_statuses:
                    self._send(b.fail_statuses.pop(0), b'{"detail": "upstream overloaded"}')
                    return
                if b.raw_body is not None:
                    self._send(200, b.raw_body)
                    return
                results = [
                    {"index": i, "relevance_score": relevance(body["query"], d) + b.score_offset, "document": d}
                    for i, d in enumerate(body["documents"])
                ]
                results.sort(key=lambda r: -r["relevance_score"])  # best first, as Jina and Cohere answer
                top_n = body["top_n"] if b.cap_top_n is None else min(body["top_n"], b.cap_top_n)
                payload = {"model": body["model"], "results": results[:top_n], "usage": {"total_tokens": 1}}
                self._send(200, json.dumps(payload).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()


def make(server: FakeServer, **kw: Any) -> HTTPReranker:
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "jina-reranker-test",
        "api_key": "rk-test",
        "timeout": 5.0,
        "retry_backoff": 0.01,
    }
    args.update(kw)
    return HTTPReranker(**args)


QUERY = "neutrophil traps thrombosis"
DOCS = [
    "Earth orbits the Sun in about 365 days.",
    "Neutrophil extracellular traps promote thrombosis in sepsis.",
    "Platelets and thrombosis.",
    "",
]


def test_scores_in_input_order_with_auth(server: FakeServer) -> None:
    with make(server) as rr:
        r: Reranker = rr
        assert r.name == "jina-reranker-test"
        scores = r.score(QUERY, DOCS)
    assert scores == [relevance(QUERY, d) for d in DOCS]  # the server answers best first: put back by index
    assert scores[1] > scores[2] > scores[0] == scores[3] == 0.0
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    [req] = server.requests
    assert req.path == "/v1/rerank"
    assert req.body == {"model": "jina-reranker-test", "query": QUERY, "documents": DOCS, "top_n": 4}
    assert req.headers["Authorization"] == "Bearer rk-test"
    assert req.headers["Content-Type"] == "application/json"


def test_rerank_ranks_best_first(server: FakeServer) -> None:
    with make(server) as rr:
        assert rerank(rr, QUERY, DOCS) == [(1, 1.0), (2, relevance(QUERY, DOCS[2])), (0, 0.0), (3, 0.0)]
        assert [i for i, _ in rerank(rr, QUERY, DOCS, top_n=2)] == [1, 2]
        assert rerank(rr, QUERY, DOCS, top_n=0) == []
        with pytest.raises(ValueError):
            rerank(rr, QUERY, DOCS, top_n=-1)


def test_rerank_checks_the_reranker_contract() -> None:
    class Short:
        name = "short"

        def score(self, query: str, texts: Sequence[str]) -> list[float]:
            return [0.5]

    with pytest.raises(RerankError, match="returned 1 scores for 2 texts"):
        rerank(Short(), "q", ["a", "b"])


def test_batches_keep_order(server: FakeServer) -> None:
    docs = [f"doc {i} " + ("thrombosis " if i % 3 == 0 else "other ") + f"w{i}" for i in range(7)]
    with make(server, batch_size=3) as rr:
        scores = rr.score("thrombosis w5 w4", docs)
    assert scores == [relevance("thrombosis w5 w4", d) for d in docs]
    assert [len(r.body["documents"]) for r in server.requests] == [3, 3, 1]
    assert [r.body["top_n"] for r in server.requests] == [3, 3, 1]


def test_no_api_key_sends_no_authorization_and_trailing_slash(server: FakeServer) -> None:
    with make(server, api_key=None, base_url=server.base_url + "/") as rr:
        rr.score("q", ["q"])
    assert "Authorization" not in server.requests[0].headers
    assert server.requests[0].path == "/v1/rerank"


def test_empty_input_makes_no_request(server: FakeServer) -> None:
    with make(server) as rr:
        assert rr.score("q", []) == []
        with pytest.raises(TypeError):
            rr.score("q", "not a list")
    assert server.requests == []


def test_retries_5xx_and_429_then_succeeds(server: FakeServer) -> None:
    server.behaviour.fail_statuses = [503, 429]
    with make(server) as rr:
        assert rr.score(QUERY, DOCS[:2]) == [0.0, 1.0]
    assert len(server.requests) == 3


def test_error_after_bounded_retries(server: FakeServer) -> None:
    server.behaviour.fail_statuses = [500] * 5
    with make(server, max_retries=2) as rr, pytest.raises(RerankError, match=r"HTTP 500 after 3 attempt") as info:
        rr.score("q", ["x"])
    assert "upstream overloaded" in str(info.value)
    assert len(server.requests) == 3  # one try + two retries
    assert info.value.code == "rerank_failed"
    assert isinstance(info.value, AlexandriaError)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(server: FakeServer, status: int) -> None:
    server.behaviour.fail_statuses = [status]
    with make(server) as rr, pytest.raises(RerankError, match=f"HTTP {status} after 1 attempt"):
        rr.score("q", ["x"])
    assert len(server.requests) == 1


def test_timeout_is_retried(server: FakeServer) -> None:
    server.behaviour.delays = [0.5]
    with make(server, timeout=0.1) as rr:
        assert rr.score("x", ["x"]) == [1.0]
    assert len(server.requests) == 2


def test_timeouts_give_up_after_retries(server: FakeServer) -> None:
    server.behaviour.delays = [0.4, 0.4]
    with make(server, timeout=0.1, max_retries=1) as rr, pytest.raises(RerankError, match="after 2 attempt"):
        rr.score("x", ["x"])
    assert len(server.requests) == 2


def test_connection_error_is_reported() -> None:
    srv = FakeServer()  # bound but never serving: close it so the port refuses connections
    url = srv.base_url
    srv.httpd.server_close()
    with HTTPReranker(url, "m", retry_backoff=0.01) as rr, pytest.raises(RerankError, match="after 3 attempt"):
        rr.score("q", ["x"])


def test_capped_top_n_is_an_error(server: FakeServer) -> None:
    server.behaviour.cap_top_n = 2
    with make(server) as rr, pytest.raises(RerankError, match="scores 2 of 4 documents"):
        rr.score(QUERY, DOCS)


def test_logits_are_rejected(server: FakeServer) -> None:
    server.behaviour.score_offset = 3.5
    with make(server) as rr, pytest.raises(RerankError, match=r"outside \[0, 1\]"):
        rr.score(QUERY, DOCS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"data": []}', "no 'results' list"),
        (b"[1, 2]", "no 'results' list"),
        (b'{"results": [{"index": 3, "relevance_score": 0.5}]}', "bad 'index'"),
        (b'{"results": [{"index": -1, "relevance_score": 0.5}]}', "bad 'index'"),
        (b'{"results": [{"index": "0", "relevance_score": 0.5}]}', "bad 'index'"),
        (b'{"results": [{"index": true, "relevance_score": 0.5}]}', "bad 'index'"),
        (b'{"results": ["nope"]}', "bad 'index'"),
        (b'{"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.5}]}', "repeats"),
        (b'{"results": [{"index": 0}]}', "no numeric 'relevance_score'"),
        (b'{"results": [{"index": 0, "relevance_score": "0.5"}]}', "no numeric 'relevance_score'"),
        (b'{"results": [{"index": 0, "relevance_score": NaN}]}', "no numeric 'relevance_score'"),
        (b'{"results": []}', "scores 0 of 1 documents"),
    ],
)
def test_malformed_responses(server: FakeServer, body: bytes, message: str) -> None:
    server.behaviour.raw_body = body
    with make(server) as rr, pytest.raises(RerankError, match=message):
        rr.score("q", ["x"])


def test_integer_scores_are_accepted(server: FakeServer) -> None:
    server.behaviour.raw_body = b'{"results": [{"index": 1, "relevance_score": 1}, {"index": 0, "relevance_score": 0}]}'
    with make(server) as rr:
        scores = rr.score("q", ["a", "b"])
    assert scores == [0.0, 1.0] and all(type(s) is float for s in scores)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        HTTPReranker("", "m")
    with pytest.raises(ValueError):
        HTTPReranker("http://127.0.0.1:9/v1", " ")
    with pytest.raises(ValueError):
        HTTPReranker("http://127.0.0.1:9/v1", "m", batch_size=0)
    with pytest.raises(ValueError):
        HTTPReranker("http://127.0.0.1:9/v1", "m", max_retries=-1)


def test_build_reranker_none_by_default() -> None:
    assert Settings().reranker == "none"
    assert build_reranker(Settings()) is None


def test_build_reranker_http_from_environment(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXANDRIA_RERANKER", "http")
    monkeypatch.setenv("ALEXANDRIA_RERANK_BASE_URL", server.base_url)
    monkeypatch.setenv("ALEXANDRIA_RERANK_API_KEY", "rk-env")
    monkeypatch.setenv("ALEXANDRIA_RERANK_MODEL", "rerank-env")
    rr = build_reranker(Settings())
    assert isinstance(rr, HTTPReranker)
    assert server.requests == []  # building makes no request
    with rr:
        assert rr.name == "rerank-env"
        assert rr.score(QUERY, DOCS[:2]) == [0.0, 1.0]
    assert server.requests[0].headers["Authorization"] == "Bearer rk-env"
    assert server.requests[0].body["model"] == "rerank-env"


def test_unknown_reranker_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXANDRIA_RERANKER", "local")
    with pytest.raises(ValueError):
        Settings()
