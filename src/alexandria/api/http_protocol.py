"""uvicorn's HTTP/1.1 protocol (h11) answering the requests it refuses itself in the dialect's own JSON envelope.

uvicorn answers a request h11 cannot parse (a request head over h11's size limit, such as a 200 KB path or a 1 MB
query string; ``Content-Length: -1``; a malformed request line or header) with a plain-text 400, and a request
target that is not ASCII with an unhandled error. This protocol answers them as the app answers any client mistake:
in the envelope of the dialect the request target names (Dify under ``/v1/``, Dust elsewhere), with
414 ``URI Too Long`` for a request line over ``MAX_REQUEST_LINE`` bytes, 431 for an oversized head otherwise, and
400 for the rest. ``alexandria serve`` runs uvicorn with it (``http=DialectH11Protocol``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # as uvicorn imports it
from uvicorn.protocols.http.h11_impl import H11Protocol

from alexandria.api.app import dialect_error

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
"""A request line longer than this, in a request head h11 refuses as too large, is answered 414 (else 431)."""
_REASONS = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}
_DIFY_CODES = {400: "bad_request", 414: "request_uri_too_large", 431: "request_header_fields_too_large"}  # werkzeug's


class _Connection(h11.Connection):
    """An h11 connection that keeps the last protocol error it raised (uvicorn drops it)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class DialectH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        configured = self.config.h11_max_incomplete_event_size
        self.head_limit = configured if configured is not None else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        self.recording = _Connection(h11.SERVER, self.head_limit)
        self.conn = self.recording
        self.head = bytearray()  # the start of the request head being received (at most head_limit + 1 bytes)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is not h11.SEND_BODY and len(self.head) <= self.head_limit:
            self.head += data[: self.head_limit + 1 - len(self.head)]
        super().data_received(data)
        if self.conn.their_state in (h11.SEND_BODY, h11.DONE):
            self.head.clear()  # the head was parsed: what comes next is a body or the next request

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except UnicodeDecodeError:  # uvicorn decodes the request target as ASCII
            self.send_400_response("The request target is not ASCII: percent-encode it.")

    def send_400_response(self, msg: str) -> None:
        error = self.recording.error
        status, message = 400, f"Malformed HTTP request: {error}." if error is not None else msg
        if error is not None and error.error_status_hint == 431:
            line = self.head.find(b"\n")
            if line < 0 or line > MAX_REQUEST_LINE:
                status, message = 414, f"The request line exceeds {MAX_REQUEST_LINE} bytes."
            else:
                status, message = 431, f"The request head exceeds {self.head_limit} bytes."
        log.info("refused a malformed request (%d): %s", status, message)
        err = dialect_error(self.target_path(), status, "invalid_request_error", message, _DIFY_CODES[status])
        body = json.dumps(err.body).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers, reason=_REASONS[status]))
            output = (output or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # a response was already under way: nothing more can be said
            output = b""
        self.transport.write(output)
        self.transport.close()

    def target_path(self) -> str:
        """The path of the request target at the start of the refused head ("" if none can be read)."""
        parts = bytes(self.head[: MAX_REQUEST_LINE + 64]).split(b" ", 2)
        if len(parts) < 2:  # the head was parsed (an error in the body): the request's own path
            return str(self.scope["path"]) if self.scope is not None and not self.head else ""
        target = parts[1].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
        if "://" in target:  # absolute form
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        return target.partition("?")[0]
