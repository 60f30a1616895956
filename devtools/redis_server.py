"""Run a private Redis (or Valkey) server, and ask a server for its version.

Used by the test suite, the development launcher, the benchmarks and the load tests, never in
production. The binary is found by :mod:`devtools.redis_binary`; the version rule is
production's own (:func:`common.redis_client.check_server_info`).
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.redis_client import check_server_info
from common.settings import redis_target
from devtools.errors import RedisServerError, RedisStartError
from devtools.lifecycle import Started
from devtools.net import LOOPBACK, free_port, free_ports
from devtools.redis_binary import find_server_binary


__all__ = ["RedisServer", "ServerTls", "check_server_version"]

# Pause between readiness probes; it is spent waiting on the process, so an early exit is seen.
_PROBE_INTERVAL = 0.05


def _client(url: str, timeout: float, options: Mapping[str, Any]) -> redis.Redis:
    """A client that fails at once: redis-py's default retries would stretch every probe."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), retries=0),
        **options,
    )


def check_server_version(
    url: str, *, timeout: float = 5.0, options: Mapping[str, Any] | None = None
) -> str:
    """Ask the server at ``url`` for its version; return a description like "Valkey 9.1.2".

    ``options`` are redis-py's keyword arguments beside the URL (password, TLS files).

    Raises:
        RedisVersionError: the server is older than Redis 7.
        RedisServerError: the server cannot be reached or queried within ``timeout`` seconds.
    """
    try:
        with _client(url, timeout, options or {}) as client:
            info = client.info("server")
    except redis.RedisError as exc:
        raise RedisServerError(f"cannot query Redis at {redis_target(url)}: {exc}") from exc
    return check_server_info(info)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server that speaks TLS only (``rediss://``), with PEM files."""

    cert_file: Path
    key_file: Path
    #: The CA that client certificates must be signed by, and that probes trust.
    ca_file: Path
    #: ``optional``: a client may show a certificate; ``yes``: it must; ``no``: never asked.
    auth_clients: str = "optional"
    #: The certificate the server's own probes show, needed with ``auth_clients="yes"``.
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RedisServer(Started):
    """A private server on 127.0.0.1, owned by this process, non-persistent by default.

    The port is fixed at construction (a free one unless given), so ``stop()`` then ``start()``
    brings the server back where its clients expect it. Each start gets a fresh temporary
    directory, and nothing is saved: a restart starts empty. With ``appendonly=True`` the
    server keeps an append-only file in one directory across restarts, so a restart keeps
    the data, as a production Redis would; :meth:`remove_data` deletes it.

    ``acl`` lines (ACL file ``user ...`` lines, see common/acl.py) are loaded at every start,
    so the users outlive a restart; ``password`` protects the ``default`` user, which keeps
    every permission. ``maxmemory`` (``"64mb"``) caps the memory with the ``noeviction``
    policy: a write that does not fit fails instead of evicting bus state. ``tls`` serves
    TLS only. ``cluster_node_timeout`` (ms) makes it a Redis Cluster node (see
    :mod:`devtools.redis_cluster`), whose directory, with its ``nodes.conf``, outlives a
    restart as an append-only one does: the node comes back as the same member; its cluster
    bus listens on ``cluster_port`` (a free one unless given).

    Usage::

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url, **server.client_options())
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: Path | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        appendonly: bool = False,
        acl: Sequence[str] = (),
        password: str | None = None,
        maxmemory: str | None = None,
        tls: ServerTls | None = None,
        cluster_node_timeout: int | None = None,
        cluster_port: int | None = None,
    ) -> None:
        if tls is not None and cluster_node_timeout is not None:
            # The cluster bus and replication would need TLS of their own (tls-cluster).
            raise ValueError("a cluster node over TLS is not supported")
        if port is None and cluster_node_timeout is not None and cluster_port is None:
            # Both at once: picked one after the other, the OS may hand out one port twice.
            port, cluster_port = free_ports(2)
        self._port = port if port is not None else free_port()
        self._acl = tuple(acl)
        self._password = password
        self._maxmemory = maxmemory
        self.tls = tls
        self._binary = binary
        self._appendonly = appendonly
        self.cluster_node_timeout = cluster_node_timeout
        # The cluster bus's port, free too: by default it is the port + 10000, which a free
        # port above 55535 does not have.
        if cluster_node_timeout is not None and cluster_port is None:
            cluster_port = free_port()
        self._cluster_port = cluster_port if cluster_node_timeout is not None else None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port, the same across restarts."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://`` with TLS), never with a password."""
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{LOOPBACK}:{self._port}/0"

    @property
    def cluster_port(self) -> int | None:
        """The cluster bus's port of a cluster node (None for a plain server)."""
        return self._cluster_port

    def client_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments, beside :attr:`url`, of a client with every right."""
        options: dict[str, Any] = {}
        if self._password is not None:
            options["password"] = self._password
        if self.tls is not None:
            options["ssl_ca_certs"] = str(self.tls.ca_file)
            if self.tls.client_cert_file is not None:
                options["ssl_certfile"] = str(self.tls.client_cert_file)
                options["ssl_keyfile"] = str(self.tls.client_key_file)
        return options

    @property
    def binary(self) -> Path:
        """The server executable, found on first use unless given."""
        if self._binary is None:
            self._binary = find_server_binary()
        return self._binary

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive (not whether it answers)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING.

        Raises:
            RedisStartError: it exited, did not answer within ``start_timeout`` seconds, or the
                port is served by another process.
            RedisNotFoundError: no binary was given and none is installed.
        """
        if self.is_running:
            raise RedisStartError(f"the server on port {self._port} is already running")
        self.stop()  # clears what a server that died on its own left behind
        binary = self.binary
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"redis-{self._port}-"))
        self._log = (self._workdir / "server.log").open("ab")
        command = [
            str(binary),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--dir", str(self._workdir),
            "--daemonize", "no",
            "--logfile", "",  # stdout, which is the log file above
            *self._options(self._workdir),
            *self._cluster_options(self._workdir),
        ]  # fmt: skip
        try:
            # A session of its own: a Ctrl-C meant for the owner must not kill the server
            # before the owner has stopped the clients that use it.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _options(self, workdir: Path) -> list[str]:
        """The command-line options of the port, the ACL file, the memory cap and TLS."""
        options = ["--port", "0" if self.tls else str(self._port)]
        lines = list(self._acl)
        if self._password is not None:
            lines.append(f"user default on #{_sha256(self._password)} ~* &* +@all")
        if lines:
            # Hashed passwords in a file of the server's own directory: none on its command
            # line, which every local user can read.
            acl_file = workdir / "users.acl"
            acl_file.touch(mode=0o600)
            acl_file.write_text("\n".join(lines) + "\n")
            options += ["--aclfile", str(acl_file)]
        if self._maxmemory is not None:
            options += ["--maxmemory", self._maxmemory, "--maxmemory-policy", "noeviction"]
        if self.tls is not None:
            tls = self.tls
            options += ["--tls-port", str(self._port), "--tls-cert-file", str(tls.cert_file)]
            options += ["--tls-key-file", str(tls.key_file), "--tls-ca-cert-file", str(tls.ca_file)]
            options += ["--tls-auth-clients", tls.auth_clients]
        return options

    def _cluster_options(self, workdir: Path) -> list[str]:
        """The options of a cluster node: its config file in its directory, its timeout."""
        if self.cluster_node_timeout is None:
            return []
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        options += ["--cluster-node-timeout", str(self.cluster_node_timeout)]
        options += ["--cluster-port", str(self._cluster_port)]
        # A replica syncs at once, not after the 5 s Redis waits by default for more replicas.
        options += ["--repl-diskless-sync-delay", "0"]
        if self._password is not None:
            # A replica authenticates to its master as the default user; the password goes
            # in a file of the node's directory, never on its command line.
            conf = workdir / "replication.conf"
            conf.touch(mode=0o600)
            conf.write_text(f"masterauth {self._password}\n")
            options += ["--include", str(conf)]
        return options

    @property
    def _keeps_data(self) -> bool:
        return self._appendonly or self.cluster_node_timeout is not None

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with _client(self.url, 1.0, self.client_options()) as client:
                    client.ping()
                    serving_pid = client.info("server").get("process_id")
            except redis.RedisError as exc:  # refused, or still loading
                last_error = exc
            else:
                if serving_pid != self._process.pid:
                    raise RedisStartError(
                        f"port {self._port} is served by another process (pid {serving_pid}); "
                        f"choose another port\n{self._log_tail()}"
                    )
                return
            try:
                returncode = self._process.wait(timeout=_PROBE_INTERVAL)
            except subprocess.TimeoutExpired:
                continue
            raise RedisStartError(
                f"{self.binary} exited with status {returncode} while starting on port "
                f"{self._port}\n{self._log_tail()}"
            )
        raise RedisStartError(
            f"{self.binary} did not answer PING on port {self._port} within "
            f"{self._start_timeout} s (last error: {last_error})\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        return "server log:\n" + "\n".join(tail) if tail else ""

    def kill(self) -> None:
        """Kill the server with SIGKILL (a crash: nothing is saved), and reap it."""
        process = self._process
        if process is not None:
            process.kill()
            process.wait(timeout=self._stop_timeout)
        self.stop()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: it keeps its connections and answers nothing.

        Raises:
            RedisServerError: it is not running.
        """
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT); harmless on one that is not paused.

        Raises:
            RedisServerError: it is not running.
        """
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RedisServerError(f"the server on port {self._port} is not running")
        # Popen signals by pid, and not at all once the process has been reaped.
        self._process.send_signal(signum)

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Idempotent."""
        process, self._process = self._process, None
        try:
            if process is not None:
                # Popen signals by pid, and not at all once the process has been reaped; a
                # paused server must go on to handle the SIGTERM.
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=self._stop_timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if not self._keeps_data:
                self.remove_data()

    def remove_data(self) -> None:
        """Delete the server's directory (its data, with ``appendonly``); it must be stopped."""
        if self._workdir is not None and not self.is_running:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def close(self) -> None:
        """Stop the server and delete its directory, whatever it keeps across restarts."""
        self.stop()
        self.remove_data()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<RedisServer {self.url} {state}>"
