"""OpenAIHTTPEmbedder against a real HTTP server on 127.0.0.1 (stdlib, in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from alexandria.ingest.base import Embedder
from alexandria.ingest.embedders import EmbedderError, OpenAIHTTPEmbedder

DIM = 8


class WhitespaceTokenizer:
    """A trivial ``Tokenizer``: one token per whitespace-separated word."""

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        out, pos = [], 0
        for word in text.split():
            start = text.index(word, pos)
            pos = start + len(word)
            out.append((start, pos, True))
        return out

    def count(self, text: str) -> int:
        return len(text.split())

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        return [(i, w) for i, w in enumerate(text.split())]


def vector_for(text: str, dim: int = DIM) -> list[float]:
    """Deterministic, not normalised, depends on the text."""
    seed = sum(ord(c) for c in text) + len(text)
    return [float((seed * (i + 3)) % 17 + 1) for i in range(dim)]


@dataclass
class Behaviour:
    """What the fake server does; tests mutate it."""

    fail_statuses: list[int] = field(default_factory=list)  # statuses to return first, one per request
    dim: int = DIM
    reverse: bool = True  # return items in reverse order (the client must sort by index)
    raw_body: bytes | None = None  # return this body verbatim (status 200)


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
                if b.fail_statuses:
                    self._send(b.fail_statuses.pop(0), b'{"error": {"message": "overloaded"}}')
                    return
                if b.raw_body is not None:
                    self._send(200, b.raw_body)
                    return
                items = [
                    {"object": "embedding", "index": i, "embedding": vector_for(t, b.dim)}
                    for i, t in enumerate(body["input"])
                ]
                if b.reverse:
                    items.reverse()
                payload = {"object": "list", "data": items, "model": body["model"], "usage": {}}
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


def make(server: FakeServer, **kw: Any) -> OpenAIHTTPEmbedder:
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "text-embedding-test",
        "api_key": "sk-test",
        "dim": DIM,
        "max_tokens": 5,
        "tokenizer": WhitespaceTokenizer(),
        "batch_size": 3,
        "timeout": 5.0,
        "retry_backoff": 0.01,
    }
    args.update(kw)
    return OpenAIHTTPEmbedder(**args)


def expected(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    v = np.asarray([vector_for(t) for t in texts], dtype=np.float64)
    out: np.ndarray[Any, np.dtype[np.float64]] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def test_request_batching_and_order(server: FakeServer) -> None:
    texts = [f"text number {i}" for i in range(7)]
    with make(server) as emb:
        e: Embedder = emb
        assert (e.name, e.dim, e.max_tokens) == ("text-embedding-test", DIM, 5)
        vecs = emb.embed(texts)
    assert vecs.shape == (7, DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(vecs, expected(texts), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    assert [len(r.body["input"]) for r in server.requests] == [3, 3, 1]
    first = server.requests[0]
    assert first.path == "/v1/embeddings"
    assert first.body == {"model": "text-embedding-test", "input": texts[:3]}
    assert first.headers["Authorization"] == "Bearer sk-test"
    assert first.headers["Content-Type"] == "application/json"


def test_no_api_key_sends_no_authorization(server: FakeServer) -> None:
    with make(server, api_key=None, base_url=server.base_url + "/") as emb:
        emb.embed(["hello"])
    assert "Authorization" not in server.requests[0].headers
    assert server.requests[0].path == "/v1/embeddings"


def test_empty_input_makes_no_request(server: FakeServer) -> None:
    with make(server) as emb:
        assert emb.embed([]).shape == (0, DIM)
    assert server.requests == []


def test_truncates_to_max_tokens(server: FakeServer) -> None:
    with make(server) as emb:
        emb.embed(["one two three four five six seven", "  short text  "])
    assert server.requests[0].body["input"] == ["one two three four five", "  short text  "]


def test_retries_then_succeeds(server: FakeServer) -> None:
    server.behaviour.fail_statuses = [503, 429]
    with make(server) as emb:
        vecs = emb.embed(["a b", "c"])
    np.testing.assert_allclose(vecs, expected(["a b", "c"]), rtol=1e-6)
    assert len(server.requests) == 3


def test_error_on_500_after_retries(server: FakeServer) -> None:
    server.behaviour.fail_statuses = [500, 500, 500, 500]
    with make(server) as emb, pytest.raises(EmbedderError, match=r"HTTP 500 after 3 attempt") as info:
        emb.embed(["x"])
    assert "overloaded" in str(info.value)
    assert len(server.requests) == 3  # one try + two retries
    assert info.value.code == "embedding_failed"


def test_client_error_is_not_retried(server: FakeServer) -> None:
    server.behaviour.fail_statuses = [401]
    with make(server) as emb, pytest.raises(EmbedderError, match="HTTP 401"):
        emb.embed(["x"])
    assert len(server.requests) == 1


def test_error_on_wrong_dimension(server: FakeServer) -> None:
    server.behaviour.dim = DIM + 1
    with make(server) as emb, pytest.raises(EmbedderError, match=r"9-d vector, expected dim 8"):
        emb.embed(["x"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"data": "nope"}', "'data' items"),
        (b'{"data": []}', "0 'data' items for 1 inputs"),
        (b'{"data": [{"index": 3, "embedding": [1,2,3,4,5,6,7,8]}]}', "bad or repeated 'index'"),
        (b'{"data": [{"index": 0}]}', "no 'embedding' list"),
        (b'{"data": [{"index": 0, "embedding": [0,0,0,0,0,0,0,0]}]}', "zero or not finite"),
        (b'{"data": [{"index": 0, "embedding": [1,2,3,"a",5,6,7,8]}]}', "not a list of numbers"),
    ],
)
def test_malformed_responses(server: FakeServer, body: bytes, message: str) -> None:
    server.behaviour.raw_body = body
    with make(server) as emb, pytest.raises(EmbedderError, match=message):
        emb.embed(["x"])


def test_connection_error_is_reported() -> None:
    srv = FakeServer()  # bound but never serving: close it so the port refuses connections
    url = srv.base_url
    srv.httpd.server_close()
    emb = OpenAIHTTPEmbedder(url, "m", None, DIM, 5, WhitespaceTokenizer(), retry_backoff=0.01)
    with emb, pytest.raises(EmbedderError, match="failed after 3 attempts"):
        emb.embed(["x"])
