"""Development launcher behind ``scripts/run``: Redis plus every service, output interleaved.

``launch.py [NAME ...]`` starts only the processes named (``gateway``, ``chat``, ``presence``,
``bids``, ``poll``), for instance a second gateway beside a running system, or the services without
one; without names it starts them all.

Redis is ``RT_REDIS_URL`` when set (it must be Redis >= 7 or Valkey), else a private server on
``RT_REDIS_PORT`` (default 6390) with the ACL users of docs/security.md, ``maxmemory``
``RT_REDIS_MAXMEMORY`` (default 256mb) and ``noeviction``; its ``default`` user needs the
password in ``.dev/redis/default.password``. Children get ``RT_REDIS_URL``, on the private
server their kind's ``RT_REDIS_USERNAME`` and ``RT_REDIS_PASSWORD_FILE``,
``RT_JWT_SECRET_FILE`` (secrets are made once in ``.dev/``) and ``RT_DEV=1``. Ctrl-C or
SIGTERM stops every child (SIGTERM, then SIGKILL after a grace time), then Redis, and exits 0;
a child that dies on its own brings everything down and the launcher exits 1.

``launch.py --cluster [--masters N] [--replicas R] [NAME ...]`` starts a private Redis
Cluster instead (3 masters with 1 replica each by default, on free ports, the same ACL users
and default password), prints its nodes, and runs the processes on it: ``RT_REDIS_CLUSTER=1``,
the seeds in ``RT_REDIS_URL``, and each service split into as many partitions as there are
masters unless its ``RT_<SERVICE>_PARTITIONS`` says otherwise. The poll service, which does
not run on a cluster yet, is left out. With ``RT_REDIS_CLUSTER=1`` and ``RT_REDIS_URL`` set,
the processes run on that cluster instead. Ctrl-C stops everything, then the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import secrets
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from common import acl


REPO_ROOT = Path(__file__).resolve().parent.parent
# devtools/ belongs to the checkout, not to the installed project: a script run by its path
# has only scripts/ on sys.path, so the checkout's root goes there too.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devtools.cluster_launch import cluster_lines  # noqa: E402 (needs the path above)
from devtools.errors import RedisServerError, RedisStartError, RedisVersionError  # noqa: E402
from devtools.redis_cluster import LocalCluster  # noqa: E402
from devtools.redis_server import RedisServer, check_server_version  # noqa: E402


JWT_SECRET_PATH = REPO_ROOT / ".dev" / "jwt-secret"
#: The bids service's admin credential in development (see docs/bids.md).
BIDS_ADMIN_TOKEN_PATH = REPO_ROOT / ".dev" / "bids-admin-token"
DEFAULT_REDIS_PORT = "6390"
#: The private server's passwords: ``<kind>.password`` per ACL user, ``default.password``.
REDIS_PASSWORDS_DIR = REPO_ROOT / ".dev" / "redis"
DEFAULT_REDIS_MAXMEMORY = "256mb"
#: How long children get between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 10.0
#: How long to wait for a SIGKILLed child to be reaped, or for output to drain.
REAP_SECONDS = 5.0
LAUNCHER_NAME = "launch"
# A child output line longer than this is cut (with a note) instead of stopping its reader.
LINE_LIMIT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: a name for its output prefix, a command, and extra environment."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    #: The process kind, whose ACL user it connects as on the private Redis.
    kind: str | None = None


def python_service(
    name: str, module: str, port: str, env: Mapping[str, str] | None = None
) -> ProcessSpec:
    """A service run as ``python -m <module>``, listening on 127.0.0.1:<port>, of kind ``name``."""
    return ProcessSpec(
        name,
        (sys.executable, "-m", module),
        {"RT_HOST": "127.0.0.1", "RT_PORT": port, **(env or {})},
        kind=name,
    )


#: The Node.js poll service (polls_service/; scripts/run installs its node_modules first).
POLL_MAIN = REPO_ROOT / "polls_service" / "src" / "main.js"


# Every process `scripts/run` starts; a new service is one more line here.
PROCESSES: tuple[ProcessSpec, ...] = (
    python_service("gateway", "realtime_gateway", port=os.environ.get("RT_PORT", "8000")),
    python_service("chat", "chat_service", port=os.environ.get("RT_CHAT_PORT", "8101")),
    python_service("presence", "presence_service", port=os.environ.get("RT_PRESENCE_PORT", "8103")),
    python_service(
        "bids",
        "bids_service",
        port=os.environ.get("RT_BIDS_PORT", "8102"),
        env={"RT_BIDS_SEED_DEMO": "1"},
    ),
    ProcessSpec(
        "poll",
        ("node", str(POLL_MAIN)),
        {"RT_HOST": "127.0.0.1", "RT_PORT": os.environ.get("RT_POLL_PORT", "8104")},
        kind="poll",
    ),
)


class Output:
    """Writes lines to stdout prefixed with a padded process name, coloured on a terminal."""

    _COLOURS = ("36", "33", "35", "32", "34", "31")  # cyan, yellow, magenta, green, blue, red

    def __init__(self, names: Sequence[str], stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        width = max(len(name) for name in names)
        coloured = stream.isatty() and "NO_COLOR" not in os.environ
        self._prefixes = {
            name: (
                f"\033[{colour}m{name:<{width}} |\033[0m " if coloured else f"{name:<{width}} | "
            )
            for name, colour in zip(names, itertools.cycle(self._COLOURS), strict=False)
        }

    def line(self, name: str, text: str) -> None:
        prefix = self._prefixes[name]
        try:
            for part in text.rstrip("\r\n").split("\n"):
                self._stream.write(prefix + part.rstrip("\r") + "\n")
            self._stream.flush()
        except BrokenPipeError:
            pass  # stdout went away (e.g. piped into `head`); keep supervising regardless

    async def pump(self, name: str, reader: asyncio.StreamReader) -> None:
        """Copy ``reader`` line by line until EOF."""
        while True:
            try:
                chunk = await reader.readline()
            except ValueError:  # asyncio dropped a line over LINE_LIMIT_BYTES
                self.line(name, "[launch: an over-long output line was cut]")
                continue
            if not chunk:
                return
            self.line(name, chunk.decode(errors="replace"))


@dataclass
class Child:
    spec: ProcessSpec
    process: asyncio.subprocess.Process
    output: asyncio.Task[None]


def ensure_dev_secret(path: Path) -> Path:
    """Create a development secret (32 random bytes as hex, mode 0600) unless it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as secret_file:
        secret_file.write(secrets.token_hex(32) + "\n")
    return path


async def start_child(spec: ProcessSpec, env: Mapping[str, str], output: Output) -> Child:
    process = await asyncio.create_subprocess_exec(
        *spec.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**env, **spec.env},
        limit=LINE_LIMIT_BYTES,
        # Own session: the terminal's Ctrl-C reaches only the launcher, which then stops the
        # children in order instead of having them and Redis all die at once.
        start_new_session=True,
    )
    assert process.stdout is not None
    pump = asyncio.create_task(output.pump(spec.name, process.stdout))
    output.line(
        LAUNCHER_NAME, f"started {spec.name} (pid {process.pid}): {shlex.join(spec.command)}"
    )
    return Child(spec, process, pump)


async def stop_children(children: Sequence[Child], output: Output) -> None:
    """SIGTERM every running child by pid, SIGKILL whichever outlives the grace time."""
    running = [child for child in children if child.process.returncode is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(child.process.wait()) for child in running]
    if waits:
        await asyncio.wait(waits, timeout=STOP_GRACE_SECONDS)
    for child in running:
        if child.process.returncode is None:
            output.line(LAUNCHER_NAME, f"{child.spec.name} ignored SIGTERM; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
    if waits:
        _, unreaped = await asyncio.wait(waits, timeout=REAP_SECONDS)
        for wait in unreaped:
            wait.cancel()
    # Let the last lines through; a grandchild holding the pipe open must not hang us.
    pumps = [child.output for child in children]
    if pumps:
        _, stuck = await asyncio.wait(pumps, timeout=REAP_SECONDS)
        for pump in stuck:
            pump.cancel()
    for child in running:
        output.line(LAUNCHER_NAME, f"{child.spec.name} exited with {child.process.returncode}")


async def supervise(
    specs: Sequence[ProcessSpec],
    env: Mapping[str, str],
    stop_requested: asyncio.Event,
    output: Output,
) -> int:
    """Run the children until a stop is requested (0) or one of them exits (1)."""
    children: list[Child] = []
    try:
        for spec in specs:
            try:
                children.append(await start_child(spec, env, output))
            except OSError as exc:
                output.line(LAUNCHER_NAME, f"cannot start {spec.name}: {exc}")
                return 1
        exits = {asyncio.create_task(child.process.wait()): child for child in children}
        stop = asyncio.create_task(stop_requested.wait())
        done, pending = await asyncio.wait({stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if stop in done:
            output.line(LAUNCHER_NAME, "stopping")
            return 0
        for task in done:
            child = exits[task]
            output.line(
                LAUNCHER_NAME,
                f"{child.spec.name} exited unexpectedly with {child.process.returncode}; "
                "stopping everything",
            )
        return 1
    finally:
        await stop_children(children, output)


def password_file(kind: str) -> Path:
    """The file of one ACL user's password on the private Redis (made once)."""
    return ensure_dev_secret(REDIS_PASSWORDS_DIR / f"{kind}.password")


def _acl_lines() -> list[str]:
    """The ACL file lines of every kind's user, with its password (made once)."""
    return [
        acl.aclfile_line(user, password_file(user.kind).read_text().strip())
        for user in acl.users(acl.KINDS)
    ]


def private_redis(port: int) -> RedisServer:
    """The private server: every kind's ACL user, a protected default user, capped memory."""
    return RedisServer(
        port,
        acl=_acl_lines(),
        password=password_file("default").read_text().strip(),
        maxmemory=os.environ.get("RT_REDIS_MAXMEMORY") or DEFAULT_REDIS_MAXMEMORY,
    )


def private_cluster(masters: int, replicas: int) -> LocalCluster:
    """A private cluster with the private server's ACL users and default password."""
    return LocalCluster(
        masters, replicas, acl=_acl_lines(), password=password_file("default").read_text().strip()
    )


def redis_credentials(spec: ProcessSpec) -> dict[str, str]:
    """The environment of ``spec``'s ACL user on the private Redis."""
    if spec.kind is None:
        return {}
    return {
        "RT_REDIS_USERNAME": acl.username(spec.kind),
        "RT_REDIS_PASSWORD_FILE": str(password_file(spec.kind)),
    }


async def provide_redis(output: Output) -> tuple[str, RedisServer | None]:
    """The Redis URL for the children, and the private server behind it if one was started."""
    url = os.environ.get("RT_REDIS_URL")
    server: RedisServer | None = None
    if not url:
        port = os.environ.get("RT_REDIS_PORT", DEFAULT_REDIS_PORT)
        if not port.isdigit():
            raise RedisServerError(f"RT_REDIS_PORT must be a port number, got {port!r}")
        server = private_redis(int(port))
        output.line(LAUNCHER_NAME, f"starting a private Redis on port {port} ({server.binary})")
        try:
            await asyncio.to_thread(server.start)
        except RedisStartError as exc:
            raise RedisStartError(
                f"{exc}\n(RT_REDIS_PORT={port}; set it to use another port)"
            ) from exc
        url = server.url
    try:
        options = server.client_options() if server is not None else {}
        # A cluster's seeds are comma-separated: any one of them tells the version.
        first = url.split(",")[0].strip()
        description = await asyncio.to_thread(check_server_version, first, options=options)
    except BaseException:
        if server is not None:
            await asyncio.to_thread(server.stop)
        raise
    where = server.url if server is not None else "RT_REDIS_URL"
    output.line(LAUNCHER_NAME, f"using {description} at {where}")
    return url, server


def stop_on_signals() -> asyncio.Event:
    """The one place Ctrl-C and SIGTERM are handled: both ask for an orderly stop."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    return stop_requested


async def provide_cluster(output: Output, shape: ClusterShape) -> tuple[str, LocalCluster]:
    """The seeds of a private cluster of ``shape``, started and shown, and the cluster."""
    cluster = private_cluster(shape.masters, shape.replicas)
    output.line(
        LAUNCHER_NAME,
        f"starting a private Redis Cluster: {shape.masters} masters, {shape.replicas} "
        f"replica{'' if shape.replicas == 1 else 's'} each ({cluster.binary})",
    )
    await asyncio.to_thread(cluster.start)
    try:
        for line in await asyncio.to_thread(cluster_lines, cluster, password_file("default")):
            output.line(LAUNCHER_NAME, line)
    except BaseException:
        await asyncio.to_thread(cluster.stop)
        raise
    return ",".join(cluster.seed_urls), cluster


async def launch(specs: Sequence[ProcessSpec], cluster: ClusterShape | None = None) -> int:
    """Start Redis (a private cluster of ``cluster``'s shape, if given) and ``specs``,
    supervise them, stop them all; return the exit status."""
    output = Output([LAUNCHER_NAME, *(spec.name for spec in specs)])
    stop_requested = stop_on_signals()

    redis_server: RedisServer | LocalCluster | None
    try:
        if cluster is not None:
            redis_url, redis_server = await provide_cluster(output, cluster)
        else:
            redis_url, redis_server = await provide_redis(output)
    except (RedisServerError, RedisVersionError) as exc:
        output.line(LAUNCHER_NAME, f"error: {exc}")
        return 1
    try:
        if stop_requested.is_set():  # Ctrl-C while Redis was starting
            return 0
        env = {
            **os.environ,
            "RT_REDIS_URL": redis_url,
            "RT_JWT_SECRET_FILE": str(ensure_dev_secret(JWT_SECRET_PATH)),
            "RT_BIDS_ADMIN_TOKEN_FILE": str(ensure_dev_secret(BIDS_ADMIN_TOKEN_PATH)),
            "RT_DEV": "1",
            # Children write to a pipe; without this Python would hold their lines back.
            "PYTHONUNBUFFERED": "1",
        }
        if sys.stdout.isatty():
            # Children write to a pipe, where the services' "auto" log format means JSON.
            env.setdefault("RT_LOG_FORMAT", "console")
        if cluster is not None:
            env["RT_REDIS_CLUSTER"] = "1"
            for spec in specs:
                if spec.kind is not None and spec.kind != "gateway":
                    # One partition per master: every service's entities spread over all.
                    env.setdefault(f"RT_{spec.kind.upper()}_PARTITIONS", str(cluster.masters))
        output.line(LAUNCHER_NAME, "Ctrl-C stops everything; `scripts/token USER` prints a token")
        if redis_server is not None:
            specs = [
                dataclasses.replace(spec, env={**redis_credentials(spec), **spec.env})
                for spec in specs
            ]
        return await supervise(specs, env, stop_requested, output)
    finally:
        if redis_server is not None:
            await asyncio.to_thread(redis_server.stop)
            what = "the cluster" if cluster is not None else "Redis"
            output.line(LAUNCHER_NAME, f"stopped {what}")


@dataclass(frozen=True)
class ClusterShape:
    masters: int
    replicas: int


def _cluster_arguments(argv: Sequence[str]) -> tuple[ClusterShape, list[str]]:
    parser = argparse.ArgumentParser(
        prog="scripts/run --cluster",
        description="Start a private Redis Cluster and the system on it (all of it, or the "
        "processes named, but the poll service, which does not run on a cluster yet).",
    )
    parser.add_argument("--masters", type=int, default=3, help="masters (default 3)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per master (default 1)")
    parser.add_argument("names", nargs="*", metavar="NAME", help="processes to start")
    arguments = parser.parse_args(argv)
    if arguments.masters < 1 or arguments.replicas < 0:
        parser.error("--masters must be 1 or more and --replicas 0 or more")
    return ClusterShape(arguments.masters, arguments.replicas), list(arguments.names)


def select(names: Sequence[str]) -> tuple[ProcessSpec, ...] | str:
    """The specs named (all of them for no name), in table order; or an error message."""
    known = {spec.name for spec in PROCESSES}
    unknown = [name for name in names if name not in known]
    if unknown:
        return f"unknown process {', '.join(unknown)}: choose among {', '.join(sorted(known))}"
    return tuple(spec for spec in PROCESSES if not names or spec.name in names)


#: What runs on one Redis only, and why, said when a cluster leaves it out.
NOT_ON_A_CLUSTER = {"poll": "the poll service does not run on a Redis Cluster yet (docs/polls.md)"}


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    cluster = None
    names = list(argv)
    if names[:1] == ["--cluster"]:
        cluster, names = _cluster_arguments(names[1:])
    clustered = cluster is not None or os.environ.get("RT_REDIS_CLUSTER") in ("1", "true")
    refused = [name for name in names if clustered and name in NOT_ON_A_CLUSTER]
    if refused:
        print(f"launch: {NOT_ON_A_CLUSTER[refused[0]]}", file=sys.stderr)
        return 2
    specs = select(names)
    if isinstance(specs, str):
        print(f"launch: {specs}", file=sys.stderr)
        return 2
    if clustered:
        for spec in specs:
            if spec.name in NOT_ON_A_CLUSTER:
                print(f"launch: left out: {NOT_ON_A_CLUSTER[spec.name]}", file=sys.stderr)
        specs = tuple(spec for spec in specs if spec.name not in NOT_ON_A_CLUSTER)
    return asyncio.run(launch(specs, cluster))


if __name__ == "__main__":
    sys.exit(main())
