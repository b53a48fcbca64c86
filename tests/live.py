"""Helpers for the tests that drive the real `alexandria` CLI and a real `alexandria serve` process over HTTP on
loopback: the CLI command, ``run_cli``, ``free_port``, and ``live_server`` (a server for the length of a ``with``
block). ``start_server`` and ``LiveServer.stop`` are the two halves of ``live_server`` for a test that kills and
restarts its server itself."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

CLI = [sys.executable, "-m", "alexandria.cli"]


def run_cli(*args: str, env: dict[str, str]) -> str:
    """Runs ``alexandria ARGS``; returns the last line of its output, fails with its stderr when it exits non-zero."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, f"alexandria {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A running ``alexandria serve`` process, listening on ``base``, logging (stdout and stderr) to ``log_path``."""

    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def logs(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, *, kill: bool = False, timeout: float = 30) -> None:
        """SIGTERM (graceful shutdown) or, with ``kill``, SIGKILL, then wait. A server still up ``timeout`` seconds
        after SIGTERM is killed and reported as a failure. Does nothing to a server that has already exited."""
        try:
            if self.proc.poll() is None:
                if kill:
                    self.proc.send_signal(signal.SIGKILL)
                    self.proc.wait(timeout=timeout)
                else:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=timeout)
                        raise AssertionError(
                            f"server did not stop within {timeout} s of SIGTERM and was killed: {self.logs()}"
                        ) from None
        finally:
            self.log_file.close()


def start_server(
    data_dir: Path,
    env: dict[str, str],
    *extra_args: str,
    port: int | None = None,
    log_path: Path | None = None,
    log_level: str = "warning",
    timeout: float = 120,
) -> LiveServer:
    """Starts ``alexandria serve --data-dir DATA_DIR --host 127.0.0.1 --port PORT --log-level LOG_LEVEL EXTRA_ARGS``
    (on a free port unless ``port`` is given) and waits until ``/healthz`` answers 200. The log is appended to
    ``log_path`` (default ``DATA_DIR/../server.log``), so a restart with the same path keeps the earlier lines. When the
    server exits or does not answer within ``timeout`` seconds, kills it and raises AssertionError with the log."""
    port = free_port() if port is None else port
    log_path = data_dir.parent / "server.log" if log_path is None else log_path
    log_file = log_path.open("ab")
    command = [*CLI, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port),
               "--log-level", log_level, *extra_args]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log_path, log_file)
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            server.stop(kill=True)
            raise AssertionError(f"server did not start: {server.logs()}")
        time.sleep(0.2)


@contextmanager
def live_server(
    data_dir: Path,
    env: dict[str, str],
    *extra_args: str,
    log_path: Path | None = None,
    log_level: str = "warning",
    timeout: float = 120,
) -> Iterator[LiveServer]:
    """A server started by ``start_server`` for the length of the block, then stopped gracefully (killed when it has not
    stopped 30 s after SIGTERM)."""
    server = start_server(data_dir, env, *extra_args, log_path=log_path, log_level=log_level, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
