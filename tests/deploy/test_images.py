"""The image and compose.yml, checked statically: no Docker engine runs here.

The tools are the ones CI has (the test dependency group): check-jsonschema with its vendored
compose spec, and hadolint. The rest reads the files and asserts what docs/operations.md
("Deploying with compose") promises: non-root hardened processes, each secret only where it
is read, Redis persistent, every process scraped, and a lock file that pins everything.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common import acl
from devtools.redis_server import RedisServer
from realtime_gateway.settings import GatewaySettings


ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KINDS = acl.BUILT_IN_KINDS
#: What each kind's compose service is called, and the port its RT_PORT names.
PORTS = {"gateway": 8000, "chat": 8101, "bids": 8102, "presence": 8103, "poll": 8104}
#: The images built from this repository: the Python one and the Node.js poll service's.
OUR_IMAGES = {"realtime:dev", "realtime-poll:dev"}
#: A service's shutdown: uvicorn's timeout_graceful_shutdown in common/service.py.
SERVICE_GRACE_S = 5.0
UID = "10001:10001"


def load_yaml(relative: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / relative).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml("compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def seconds(duration: str) -> float:
    """A compose duration such as ``15s`` or ``1m30s``, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def secrets_of(service: dict[str, Any]) -> set[str]:
    return {item if isinstance(item, str) else item["source"] for item in service["secrets"]}


def run_tool(*command: str | Path) -> None:
    """Runs a checker in the repository; its findings are the failure message."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec() -> None:
    """compose.yml validates against the compose spec that check-jsonschema vendors."""
    run_tool(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yml")


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in the Dockerfiles, at any level down to style."""
    run_tool(BIN / "hadolint", "--no-color", "Dockerfile")
    run_tool(BIN / "hadolint", "--no-color", "polls_service/Dockerfile")


def final_stage(dockerfile: str) -> str:
    return dockerfile.rsplit("\nFROM ", 1)[1]


def test_image_runs_as_a_fixed_non_root_user_with_a_healthcheck() -> None:
    """The runtime stage is a pinned slim Python, runs as 10001 and checks /livez."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1))
    runtime = final_stage(dockerfile)
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "--uid 10001" in runtime
    assert "--gid 10001" in runtime
    assert re.search(r"^HEALTHCHECK .*/livez", runtime, re.MULTILINE | re.DOTALL)
    # Only the built venv crosses over: no sources, tests, compilers or test groups.
    assert re.findall(r"^COPY .*$", runtime, re.MULTILINE) == [
        "COPY --from=build /opt/venv /opt/venv"
    ]
    assert "--group" not in dockerfile
    assert re.search(r"pip install --require-hashes .*-r requirements\.lock", dockerfile)


def test_build_context_holds_what_the_wheel_needs_and_no_more() -> None:
    """.dockerignore lets in the packages and the JS files static/client links to, not tests."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = [pattern[1:] for pattern in patterns if pattern.startswith("!")]

    def admitted(path: str) -> bool:
        return any(
            path == p or path.startswith(p + "/") or fnmatch.fnmatch(path, p) for p in allowed
        )

    links = sorted((ROOT / "realtime_gateway" / "static" / "client").iterdir())
    assert any(link.is_symlink() for link in links)
    for link in links:
        target = link.resolve().relative_to(ROOT).as_posix()
        assert admitted(target), f"{link.name} -> {target} is left out of the build context"
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "common/keys.py"):
        assert admitted(needed), needed
    for kept_out in ("tests/conftest.py", ".venv", ".git", ".dev/jwt-secret", "docs/bus.md"):
        assert not admitted(kept_out), kept_out


def pins(relative: str) -> dict[str, tuple[str, int]]:
    """Each pinned name of a lock file: its version and how many hashes it carries."""
    found: dict[str, tuple[str, int]] = {}
    text = (ROOT / relative).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)\s", line + " ")
        assert match, f"{relative}: not an exact pin: {line}"
        found[canonicalize_name(match.group(1))] = (match.group(2), line.count("--hash=sha256:"))
    return found


def test_lock_files_pin_every_dependency_with_hashes() -> None:
    """Every runtime and build requirement is pinned to a version it allows, with hashes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for lock, requirements in (
        ("requirements.lock", project["project"]["dependencies"]),
        ("requirements-build.lock", project["build-system"]["requires"]),
    ):
        pinned = pins(lock)
        assert all(count > 0 for _, count in pinned.values()), lock
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{lock} does not pin {name}"
            assert requirement.specifier.contains(pinned[name][0]), (lock, line, pinned[name])
    # The extras the project asks for: hiredis (redis[hiredis]), cryptography (pyjwt[crypto]).
    assert {"hiredis", "cryptography"} <= pins("requirements.lock").keys()


def our_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") in OUR_IMAGES}


def test_every_container_of_our_images_is_hardened(services: dict[str, dict[str, Any]]) -> None:
    """Every container of our images: UID 10001, read-only, no capabilities, no escalation."""
    ours = our_services(services)
    assert set(KINDS) | {"redis-acl"} == ours.keys()
    assert ours["poll"]["image"] == "realtime-poll:dev"
    for name, service in ours.items():
        assert service["user"] == UID, name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "container_name" not in service, name


def test_processes_have_healthchecks_limits_and_a_long_enough_stop(
    services: dict[str, dict[str, Any]],
) -> None:
    """Each process: readiness on its port, CPU and memory limits, a stop longer than its drain."""
    defaults: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(GatewaySettings)}
    drains = {kind: SERVICE_GRACE_S for kind in KINDS}
    # After 1012, clients get RT_SHUTDOWN_GRACE, then RT_CLOSE_TIMEOUT to finish closing.
    drains["gateway"] = float(defaults["shutdown_grace"]) + float(defaults["close_timeout"])
    for kind in KINDS:
        service = services[kind]
        assert service["environment"]["RT_PORT"] == str(PORTS[kind])
        assert f"127.0.0.1:{PORTS[kind]}/readyz" in " ".join(service["healthcheck"]["test"])
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0, kind
        assert limits["memory"], kind
        assert seconds(service["stop_grace_period"]) > drains[kind], kind
    assert services["redis"]["healthcheck"]["test"]
    assert services["redis"]["deploy"]["resources"]["limits"]["memory"]


def test_only_the_gateway_publishes_a_port(services: dict[str, dict[str, Any]]) -> None:
    """The services publish no host port, so `--scale bids=4` starts four of them."""
    for kind in KINDS:
        assert ("ports" in services[kind]) == (kind == "gateway"), kind
    for name in ("gateway", "prometheus", "grafana"):
        # Published on the loopback only.
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_each_secret_is_mounted_only_where_it_is_read(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The JWT secret in the gateway alone, each Redis password in its own process only."""
    readers: dict[str, set[str]] = {}
    for name, service in services.items():
        for secret in secrets_of(service) if "secrets" in service else ():
            readers.setdefault(secret, set()).add(name)
    assert readers.keys() == compose["secrets"].keys()
    assert readers.pop("jwt_secret") == {"gateway"}
    assert readers.pop("bids_admin_token") == {"bids"}
    assert readers.pop("redis_default_password") == {"redis", "redis-acl"}
    assert readers.pop("grafana_admin_password") == {"grafana"}
    for kind in KINDS:
        assert readers.pop(f"redis_{kind}_password") == {kind, "redis-acl"}, kind
    assert not readers
    for kind in KINDS:
        environment = services[kind]["environment"]
        assert environment["RT_REDIS_USERNAME"] == acl.username(kind)
        assert "@" not in environment["RT_REDIS_URL"], "no credentials in the URL"
        # Every file a process is told to read is a secret mounted into it.
        files = {v for k, v in environment.items() if k.endswith("_FILE")}
        assert files == {f"/run/secrets/{secret}" for secret in secrets_of(services[kind])}, kind


def test_every_setting_compose_gives_is_documented(services: dict[str, dict[str, Any]]) -> None:
    """Each RT_* variable in compose.yml is one docs/configuration.md describes (no typo)."""
    documented = set(re.findall(r"`(RT_[A-Z0-9_]+)`", (ROOT / "docs/configuration.md").read_text()))
    for kind in KINDS:
        for variable in services[kind]["environment"]:
            secret_of = variable.removesuffix("_FILE")
            assert variable in documented or secret_of in documented, (kind, variable)


def test_redis_persists_with_aof_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """Redis appends every write to its AOF in the redis-data volume, and never evicts."""
    redis_service = services["redis"]
    command = redis_service["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert f"redis-data:{options['--dir']}" in redis_service["volumes"]
    assert "redis-data" in compose["volumes"]
    assert re.fullmatch(r"valkey/valkey:\d+\.\d+\.\d+", redis_service["image"])
    assert redis_service["depends_on"]["redis-acl"]["condition"] == (
        "service_completed_successfully"
    )


def test_acl_file_of_compose_loads_and_lets_each_process_in(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """redis-acl's script writes an ACL file a real server loads, each user with its password."""
    script = services["redis-acl"]["command"][2]
    secrets_dir, out_dir = tmp_path / "secrets", tmp_path / "out"
    secrets_dir.mkdir()
    out_dir.mkdir()
    passwords = {kind: f"{kind}-pw-{index}" for index, kind in enumerate((*KINDS, "default"))}
    for kind, password in passwords.items():
        (secrets_dir / f"redis_{kind}_password").write_text(password + "\n")
    script = script.replace("/run/secrets", str(secrets_dir))
    script = script.replace("/var/lib/realtime", str(out_dir))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    acl_file = out_dir / "users.acl"
    assert acl_file.stat().st_mode & 0o777 == 0o644
    lines = acl_file.read_text().splitlines()
    assert not any(password in acl_file.read_text() for password in passwords.values())
    default = [line for line in lines if line.startswith("user default ")]
    assert len(default) == 1
    assert "on #" in default[0]
    users = [line for line in lines if not line.startswith("user default ")]
    with RedisServer(acl=users, password=passwords["default"]) as server:
        for kind in KINDS:
            client = redis.Redis(
                port=server.port, username=acl.username(kind), password=passwords[kind]
            )
            with client:
                assert client.ping() is True


def test_observability_profile_scrapes_every_process(
    services: dict[str, dict[str, Any]],
) -> None:
    """Prometheus and Grafana start only with the profile; every kind's replicas are scraped."""
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"], name
    pinned = r"[\w./-]+:v?\d+\.\d+\.\d+"
    for name, service in services.items():
        if "image" in service and service["image"] not in OUR_IMAGES:
            assert re.fullmatch(pinned, service["image"]), (name, service["image"])
    config = load_yaml("deploy/prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs.keys() == set(KINDS)
    for kind, job in jobs.items():
        # One A record per replica in Docker's DNS: each replica of a scaled service is a target.
        (discovery,) = job["dns_sd_configs"]
        assert discovery == {**discovery, "names": [kind], "type": "A", "port": PORTS[kind]}
    prometheus_mounts = services["prometheus"]["volumes"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus_mounts
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in (
        prometheus_mounts
    )


def test_prometheus_config_passes_promtool() -> None:
    """promtool accepts compose's Prometheus config (its rule file is checked on its own)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: scripts/test installs it (Debian's prometheus)")
    run_tool(promtool, "check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml")


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    """Grafana's data source is compose's Prometheus; its provider reads the mounted dashboard."""
    datasources = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = load_yaml("deploy/grafana/provisioning/dashboards/realtime.yml")
    (provider,) = providers["providers"]
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    mounts = services["grafana"]["volumes"]
    assert f"./deploy/grafana/realtime.json:{path}/realtime.json:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
