"""The whole system started the way ``scripts/run`` starts it: ``scripts/launch.py``.

Each :class:`Launch` is one ``scripts/launch.py [NAME ...]`` process (development mode, the
repository's ``.dev/`` secrets) on free loopback ports and a Redis of the test's choosing;
its children are the gateway and the services. :class:`System` holds the services'
launcher and any number of gateway launchers, so that a test can kill one gateway (SIGKILL
by PID) and start it again on the same port. Everything is stopped by PID.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from devtools.net import free_port, free_ports
from devtools.processes import environment
from devtools.registry import routes_to
from tests.support.processes import REPO_ROOT, STOP_TIMEOUT, ManagedProcess, http_get


__all__ = ["BIDS_ADMIN_TOKEN_PATH", "SERVICES", "Launch", "System"]

LAUNCH_SCRIPT = REPO_ROOT / "scripts" / "launch.py"
#: Where the launcher keeps the bids admin token (scripts/launch.py makes it once).
BIDS_ADMIN_TOKEN_PATH = REPO_ROOT / ".dev" / "bids-admin-token"
#: The service processes launch.py knows, and the variable that sets each one's port.
SERVICES = {
    "chat": "RT_CHAT_PORT",
    "presence": "RT_PRESENCE_PORT",
    "bids": "RT_BIDS_PORT",
    "poll": "RT_POLL_PORT",
}
_MODULES = {
    "gateway": "realtime_gateway",
    "chat": "chat_service",
    "presence": "presence_service",
    "bids": "bids_service",
    # launch.py runs it as node polls_service/src/main.js.
    "poll": "polls_service/src/main.js",
}


class Launch(ManagedProcess):
    """One ``scripts/launch.py`` process and the children it starts, output in a log file.

    Its ``port`` is its first child's; ``ports`` has every child's.
    """

    def __init__(
        self, names: Sequence[str], env: Mapping[str, str], ports: Mapping[str, int], log: Path
    ) -> None:
        self.names = list(names)
        self.ports = dict(ports)
        command = [sys.executable, str(LAUNCH_SCRIPT), *names]
        name = f"launch-{'-'.join(names)}"
        super().__init__(name, "", [], dict(env), self.ports[names[0]], log, command=command)

    def ready(self) -> bool:
        """Whether every child answers 200 on /readyz (what ``wait_ready`` waits for), and
        every gateway has read the three services' announcements: it may be ready (one read
        done) up to RT_REGISTRY_POLL before a service it was started beside announced."""
        return all(self._child_ready(name) for name in self.names)

    def _child_ready(self, name: str) -> bool:
        base = f"http://127.0.0.1:{self.ports[name]}"
        if name == "gateway":
            return routes_to(base, len(SERVICES))
        return http_get(f"{base}/readyz", 1.0)[0] == 200

    def child(self, name: str) -> psutil.Process:
        """The child process running ``name`` (launch.py runs each as ``python -m <module>``)."""
        module = _MODULES[name]
        for child in psutil.Process(self.pid).children():
            if any(arg.endswith(module) for arg in child.cmdline()):
                return child
        raise AssertionError(f"{self!r} has no {name} child: {self.describe()}")

    def stop(self, timeout: float = STOP_TIMEOUT, *, signum: int | None = None) -> int:
        """SIGTERM the launcher, which stops its children in order (10 s each at most);
        whatever is left after that is SIGKILLed, children first."""
        if self.running:
            children = psutil.Process(self.pid).children()
            self.signal(signal.SIGTERM if signum is None else signum)
            if self.wait(timeout + 10) is None:
                for child in children:
                    child.kill()
        return super().stop(timeout, signum=signum)


class System:
    """The services (one launcher) and gateways (one launcher each) on one Redis."""

    def __init__(self, redis_url: str, log_dir: Path, prefix: str) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.prefix = prefix
        self.ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.services: Launch | None = None
        self.gateways: list[Launch] = []

    def _env(self, ports: Mapping[str, int]) -> dict[str, str]:
        # None of the caller's RT_* settings leak in; the launcher adds RT_DEV and the secrets.
        env = environment(
            {
                "RT_REDIS_URL": self.redis_url,
                "RT_LOG_FORMAT": "console",
                "NO_COLOR": "1",
                "RT_PORT": str(ports.get("gateway", 0)),
            }
        )
        env.update({SERVICES[name]: str(port) for name, port in ports.items() if name in SERVICES})
        return env

    def _gateway_port(self) -> int:
        """A free port that no service nor earlier gateway of this system was given."""
        taken = {*self.ports.values(), *(port for g in self.gateways for port in g.ports.values())}
        (port,) = free_ports(1, besides=taken)
        return port

    def _launch(self, names: Sequence[str], ports: Mapping[str, int]) -> Launch:
        log = self.log_dir / f"launch-{self.prefix}-{'-'.join(names)}-{free_port()}.log"
        return Launch(names, self._env(ports), ports, log)

    def start(self, gateways: int = 1, *, together: bool = False) -> System:
        """Start the services and ``gateways`` gateways; ``together``: all in one launcher,
        exactly as ``scripts/run`` does (then no gateway can be restarted alone)."""
        if together:
            ports = {"gateway": self._gateway_port(), **self.ports}
            launch = self._launch(["gateway", *SERVICES], ports)
            self.services = launch
            self.gateways.append(launch)
        else:
            self.services = self._launch(list(SERVICES), self.ports)
            for _ in range(gateways):
                self.gateways.append(self._launch(["gateway"], {"gateway": self._gateway_port()}))
        for launch in [self.services, *self.gateways]:
            launch.wait_ready()
        return self

    def gateway_port(self, index: int = 0) -> int:
        return self.gateways[index].ports["gateway"]

    def base_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.gateway_port(index)}"

    def kill_gateway(self, index: int = 0) -> None:
        """SIGKILL gateway ``index`` (no goodbye to anyone); its launcher then exits."""
        launch = self.gateways[index]
        launch.child("gateway").kill()
        launch.stop()

    def start_gateway_again(self, index: int = 0) -> None:
        """A new gateway launcher on the port of gateway ``index``, once it is ready."""
        ports = self.gateways[index].ports
        self.gateways[index] = self._launch(["gateway"], ports)
        self.gateways[index].wait_ready()

    def service(self, name: str) -> psutil.Process:
        assert self.services is not None
        return self.services.child(name)

    def stop(self) -> None:
        for launch in [*self.gateways, self.services]:
            if launch is not None:
                launch.stop()  # idempotent
        self.gateways.clear()
        self.services = None
