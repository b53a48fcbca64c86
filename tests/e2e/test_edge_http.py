"""Malformed HTTP requests sent over raw sockets to a real ``alexandria serve`` process (issue 11, items 6 and 1): what
uvicorn/h11 refuses before the app (a 200 KB path, a 1 MB query string, an oversized header, ``Content-Length: -1``,
a non-ASCII request target) and a chunked body over the size limit are answered in the envelope of the dialect the
path names (Dust under ``/api/v1``, Dify under ``/v1``) with 414 / 431 / 400 / 413, and the server keeps serving.

No embedding happens here: the server runs the HTTP embedder pointed at a closed port (it never gets called)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import live_server, run_cli

pytestmark = pytest.mark.e2e

MAX_BODY_MB = 0.05


@dataclass
class Server:
    host: str
    port: int
    key: str
    space: str
    ds: str
    dataset: str

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dust(self) -> str:
        return f"/api/v1/w/acme/spaces/{self.space}/data_sources/{self.ds}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("edge") / "data"
    env = {
        **os.environ,
        "ALEXANDRIA_EMBEDDER": "openai",
        "ALEXANDRIA_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "ALEXANDRIA_MAX_BODY_MB": str(MAX_BODY_MB),
    }
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", "acme", env=env)
    ds = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", "acme", "notes", env=env)
    with live_server(data, env) as live:
        h = {"Authorization": f"Bearer {key}"}
        space = httpx.get(f"{live.base}/api/v1/w/acme/spaces", headers=h).json()["spaces"][0]["sId"]
        dataset = httpx.post(f"{live.base}/v1/datasets", json={"name": "kb"}, headers=h).json()["id"]
        yield Server("127.0.0.1", live.port, key, space, ds, dataset)


def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends ``raw`` on a new connection (the server may stop reading and close early) and reads the answer."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)  # may be refused before it is all sent: the answer is already on its way
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), received[:200]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2 :]


def request(server: Server, method: str, target: str | bytes, *headers: str, body: bytes = b"") -> bytes:
    path = target if isinstance(target, bytes) else target.encode()
    head = [f"Host: {server.host}", f"Authorization: Bearer {server.key}", *headers]
    return (
        method.encode() + b" " + path + b" HTTP/1.1\r\n" + "".join(h + "\r\n" for h in head).encode() + b"\r\n" + body
    )


def assert_dust(answer: tuple[int, dict[str, str], bytes], status: int, type_: str) -> dict[str, Any]:
    got, headers, body = answer
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json", headers
    parsed = json.loads(body)
    assert set(parsed) == {"error"} and parsed["error"]["type"] == type_, parsed
    assert isinstance(parsed["error"]["message"], str) and parsed["error"]["message"]
    return dict(parsed["error"])


def assert_dify(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> dict[str, Any]:
    got, headers, body = answer
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json", headers
    parsed: dict[str, Any] = json.loads(body)
    assert set(parsed) == {"code", "message", "status"}, parsed
    assert (parsed["code"], parsed["status"]) == (code, status), parsed
    return parsed


def test_a_200_kb_path(server: Server) -> None:
    long = "x" * 200_000
    assert_dust(
        exchange(server, request(server, "GET", f"{server.dust}/documents/{long}")), 414, "invalid_request_error"
    )
    assert_dify(exchange(server, request(server, "GET", f"/v1/datasets/{long}")), 414, "request_uri_too_large")


def test_a_1_mb_query_string(server: Server) -> None:
    query = "query=" + "y" * 1_000_000
    assert_dust(exchange(server, request(server, "GET", f"{server.dust}/search?{query}")), 414, "invalid_request_error")
    answer = exchange(server, request(server, "GET", f"/v1/datasets/{server.dataset}/documents?{query}"))
    assert_dify(answer, 414, "request_uri_too_large")


def test_an_oversized_header(server: Server) -> None:
    big = "X-Padding: " + "z" * 200_000
    assert_dust(exchange(server, request(server, "GET", f"{server.dust}/documents", big)), 431, "invalid_request_error")
    answer = exchange(server, request(server, "GET", f"/v1/datasets/{server.dataset}", big))
    assert_dify(answer, 431, "request_header_fields_too_large")


def test_a_negative_content_length(server: Server) -> None:
    for length in ("-1", "abc", "1, 2"):
        headers = (f"Content-Length: {length}", "Content-Type: application/json")
        answer = exchange(server, request(server, "POST", f"{server.dust}/documents/d1", *headers, body=b"{}"))
        assert_dust(answer, 400, "invalid_request_error")
        answer = exchange(server, request(server, "POST", "/v1/datasets", *headers, body=b"{}"))
        assert_dify(answer, 400, "bad_request")


def test_a_non_ascii_request_target(server: Server) -> None:
    answer = exchange(server, request(server, "GET", b"/v1/datasets/\xff\xfe"))
    assert_dify(answer, 400, "bad_request")
    answer = exchange(server, request(server, "GET", server.dust.encode() + b"/documents/\xe9"))
    assert_dust(answer, 400, "invalid_request_error")


def test_a_chunked_body_over_the_limit(server: Server) -> None:
    piece = b'{"text": "' + b"a" * int(MAX_BODY_MB * 1024 * 1024 + 100) + b'", "name": "n"}'
    chunked = b"".join(f"{len(piece[i : i + 8192]):x}\r\n".encode() + piece[i : i + 8192] + b"\r\n"
                       for i in range(0, len(piece), 8192)) + b"0\r\n\r\n"  # fmt: skip
    headers = ("Transfer-Encoding: chunked", "Content-Type: application/json")
    answer = exchange(server, request(server, "POST", f"{server.dust}/documents/d1", *headers, body=chunked))
    assert_dust(answer, 413, "content_too_large")
    path = f"/v1/datasets/{server.dataset}/document/create-by-text"
    assert_dify(
        exchange(server, request(server, "POST", path, *headers, body=chunked)), 413, "request_entity_too_large"
    )
    h = {"Authorization": f"Bearer {server.key}"}
    assert httpx.get(f"{server.base}{server.dust}/documents", headers=h).json()["documents"] == []
    assert httpx.get(f"{server.base}/v1/datasets/{server.dataset}/documents", headers=h).json()["data"] == []


def test_the_server_keeps_serving_on_one_connection(server: Server) -> None:
    h = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.base, headers=h) as client:  # keep-alive: the same connection twice
        for _ in range(2):
            resp = client.get(f"{server.dust}/documents", params={"limit": "1"})
            assert resp.status_code == 200, resp.text
            resp = client.get(f"{server.dust}/documents", params={"limit": str(2**70)})
            assert_dust((resp.status_code, dict(resp.headers), resp.content), 400, "invalid_request_error")


def test_a_request_that_is_not_http(server: Server) -> None:
    assert_dust(exchange(server, b"NOT HTTP AT ALL\r\n\r\n"), 400, "invalid_request_error")
    assert_dify(exchange(server, b"GET /v1/datasets HTTP/1.1\r\nBad Header Line\r\n\r\n"), 400, "bad_request")
