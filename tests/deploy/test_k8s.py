"""The Kubernetes manifests (deploy/k8s): rendered, valid, and true to what the processes need.

No cluster runs here: each overlay is rendered by devtools/kustomize.py, validated against
the Kubernetes 1.30 schemas that kubernetes-validate bundles, and checked against the code
(ports, settings names, shutdown times) so that a manifest cannot drift from it.
"""

from __future__ import annotations

import inspect
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from bids_service.settings import DEFAULT_PORT as BIDS_PORT, BidsSettings
from chat_service.settings import DEFAULT_PORT as CHAT_PORT, ChatSettings
from common.settings import PREFIX, Env, LogSettings, ServiceSettings
from common.tasks import cancel_and_wait
from devtools.kustomize import Manifest, render
from presence_service.settings import DEFAULT_PORT as PRESENCE_PORT, PresenceSettings
from realtime_gateway.settings import GatewaySettings


ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TREES = ("base", "overlays/dev", "overlays/prod")
KUBERNETES_VERSION = "1.30.0"
PORTS = {"gateway": 8000, "chat": CHAT_PORT, "bids": BIDS_PORT, "presence": PRESENCE_PORT}
SERVICE_SETTINGS: dict[str, Callable[[Env], object]] = {
    "chat": ChatSettings.from_env,
    "bids": BidsSettings.from_env,
    "presence": PresenceSettings.from_env,
}
#: Secret name -> the only Deployments or StatefulSets that may mount it.
SECRET_USERS = {
    "rt-jwt": {"gateway"},
    "rt-bids-admin": {"bids"},
    **{f"rt-redis-{kind}": {kind, "redis"} for kind in PORTS},
    # The Node.js poll service has no Deployment yet; the dev Redis knows its user.
    "rt-redis-poll": {"redis"},
}


def rendered(tree: str) -> list[Manifest]:
    return render(K8S / tree)


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_owners(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {**of_kind(manifests, "Deployment"), **of_kind(manifests, "StatefulSet")}


def containers(owner: Manifest) -> Iterator[dict[str, Any]]:
    pod = owner["spec"]["template"]["spec"]
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def container_of(manifests: list[Manifest], name: str) -> dict[str, Any]:
    container: dict[str, Any] = of_kind(manifests, "Deployment")[name]["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def pre_stop_seconds(container: dict[str, Any]) -> float:
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    match = re.search(r"sleep\((\d+(?:\.\d+)?)\)", command)
    assert match, command
    return float(match.group(1))


class RecordingEnv(Env):
    """An Env that notes every ``RT_*`` name the settings readers ask for."""

    def __init__(self, environ: dict[str, str]) -> None:
        super().__init__(environ)
        self.names: set[str] = set()

    def _raw(self, name: str) -> str | None:
        self.names.add(PREFIX + name)
        return super()._raw(name)


def process_environ(manifests: list[Manifest], name: str, secret_dir: Path) -> dict[str, str]:
    """The environment the process would get: config maps resolved, secret files written."""
    config_maps = of_kind(manifests, "ConfigMap")
    environ = {}
    for variable, spec in env_of(container_of(manifests, name)).items():
        source = spec.get("valueFrom", {})
        if "value" in spec:
            environ[variable] = str(spec["value"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environ[variable] = config_maps[ref["name"]]["data"][ref["key"]]
        else:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", spec
            environ[variable] = f"{name}-7d4b9c-x2kq9"
        if variable.endswith("_FILE"):
            secret = secret_dir / variable
            secret.write_text(secrets.token_urlsafe(32))
            environ[variable] = str(secret)
    return environ


def read_settings(name: str, environ: dict[str, str]) -> tuple[Any, set[str]]:
    """What the process reads from ``environ``: its settings and every name it asked for."""
    env = RecordingEnv(environ)
    LogSettings.from_env(env)
    if name == "gateway":
        return GatewaySettings.from_env(env), env.names
    SERVICE_SETTINGS[name](env)
    return ServiceSettings.from_env(name, PORTS[name], env), env.names


@dataclass(frozen=True)
class Deployed:
    """One process as a tree deploys it: the manifests, its container, what it reads."""

    manifests: list[Manifest]
    container: dict[str, Any]
    settings: Any
    names: set[str]


def deployed(tree: str, name: str, secret_dir: Path) -> Deployed:
    manifests = rendered(tree)
    settings, names = read_settings(name, process_environ(manifests, name, secret_dir))
    return Deployed(manifests, container_of(manifests, name), settings, names)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) matches ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(owner: Manifest) -> dict[str, str]:
    labels: dict[str, str] = owner["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("tree", TREES)
def test_every_manifest_is_valid_kubernetes(tree: str) -> None:
    """Every rendered manifest passes the strict schema of its kind and API version."""
    manifests = rendered(tree)
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_mistake() -> None:
    """A misspelt field fails the validation the test above relies on."""
    gateway = of_kind(rendered("base"), "Deployment")["gateway"]
    gateway["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_every_container_runs_unprivileged(tree: str) -> None:
    """Non-root, no privilege escalation, no capability, a read-only root, seccomp on."""
    for name, owner in pod_owners(rendered(tree)).items():
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(owner):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, container["name"]
            assert security["allowPrivilegeEscalation"] is False, container["name"]
            assert security["capabilities"]["drop"] == ["ALL"], container["name"]
            assert "limits" in container["resources"], container["name"]
        if name in PORTS:
            assert pod["securityContext"]["runAsUser"] == 10001, name
            assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", list(PORTS))
def test_probes_and_port_match_the_process(tree: str, name: str, tmp_path: Path) -> None:
    """/readyz and /livez are probed on the port the process listens on, on every address."""
    process = deployed(tree, name, tmp_path)
    container = process.container
    assert process.settings.host == "0.0.0.0"
    assert process.settings.port == PORTS[name]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == PORTS[name]
    assert container["command"][-1] == (
        "realtime_gateway" if name == "gateway" else f"{name}_service"
    )


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", list(PORTS))
def test_every_rt_variable_is_one_the_process_reads(tree: str, name: str, tmp_path: Path) -> None:
    """A misspelt RT_ name (or one meant for another process) fails here, not silently in a pod."""
    process = deployed(tree, name, tmp_path)
    given = {variable for variable in env_of(process.container) if variable.startswith("RT_")}
    assert given - process.names == set()


def test_the_unknown_name_check_would_catch_a_typo() -> None:
    """The settings readers do not ask for a misspelt name, so the test above would see it."""
    _, names = read_settings("gateway", {"RT_DEV": "1"})
    assert "RT_SHUTDOWN_GRACE" in names
    assert "RT_SHUTDOWN_GRAEC" not in names


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", list(PORTS))
def test_grace_period_covers_the_drain(tree: str, name: str, tmp_path: Path) -> None:
    """Kubernetes waits at least preStop plus the process's whole drain before SIGKILL."""
    process = deployed(tree, name, tmp_path)
    settings = process.settings
    task_grace = inspect.signature(cancel_and_wait).parameters["within"].default
    if name == "gateway":
        # 1012 to every client, up to RT_SHUTDOWN_GRACE for them to go, the last close
        # handshakes, then the lifespan's tasks.
        drain = settings.shutdown_grace + settings.close_timeout + task_grace
    else:
        service_py = (ROOT / "common" / "service.py").read_text()
        uvicorn_grace = re.search(r"timeout_graceful_shutdown=(\d+)", service_py)
        assert uvicorn_grace
        drain = int(uvicorn_grace.group(1)) + task_grace
    pod = of_kind(process.manifests, "Deployment")[name]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_seconds(process.container) + drain
    assert pre_stop_seconds(process.container) >= 2, "endpoints need time to drop the pod"


@pytest.mark.parametrize("tree", TREES)
def test_a_disruption_budget_covers_every_deployment(tree: str) -> None:
    """Each Deployment's pods are under a PodDisruptionBudget that lets a drain proceed."""
    manifests = rendered(tree)
    budgets = of_kind(manifests, "PodDisruptionBudget").values()
    for name, deployment in of_kind(manifests, "Deployment").items():
        covering = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        assert len(covering) == 1, name
        assert covering[0]["spec"].get("maxUnavailable") == 1, name


@pytest.mark.parametrize("tree", TREES)
def test_the_hpa_scales_bids_on_cpu(tree: str) -> None:
    """The bids HPA targets the bids Deployment, which leaves its replica count to it."""
    manifests = rendered(tree)
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    assert list(hpas) == ["bids"]
    spec = hpas["bids"]["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bids"}
    assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
    assert spec["minReplicas"] <= spec["maxReplicas"]
    assert "replicas" not in of_kind(manifests, "Deployment")["bids"]["spec"]
    if tree == "overlays/prod":
        assert spec["minReplicas"] >= 2


def test_the_documented_lag_metric_is_one_the_services_export() -> None:
    """The HPA's commented lag metric is the services' own, with its service label."""
    hpa_text = (K8S / "base" / "bids-hpa.yaml").read_text()
    assert "name: rt_service_stream_lag" in hpa_text
    assert "service: bids" in hpa_text
    assert '"rt_service_stream_lag"' in (ROOT / "common" / "service.py").read_text()


@pytest.mark.parametrize("tree", TREES)
def test_network_policies_deny_by_default_and_expose_only_the_gateway(tree: str) -> None:
    """Default deny; from outside the namespace only the gateway, and Prometheus on metrics."""
    manifests = rendered(tree)
    policies = of_kind(manifests, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    owners = pod_owners(manifests)
    for name, policy in policies.items():
        spec = policy["spec"]
        selected = {n for n, o in owners.items() if selects(spec["podSelector"], pod_labels(o))}
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{name}: an ingress rule open to every source"
            for peer in rule["from"]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    continue  # from pods of this namespace
                source = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                if source == "ingress-nginx":
                    assert selected == {"gateway"}, name
                else:
                    assert source == "monitoring", name
                    ports = {port["port"] for port in rule["ports"]}
                    assert ports <= set(PORTS.values()), name
        for rule in spec.get("egress", []):
            ports = {port["port"] for port in rule["ports"]}
            assert ports in ({6379}, {53}), f"{name}: egress beyond Redis and DNS"


@pytest.mark.parametrize("tree", TREES)
def test_each_secret_is_mounted_only_where_it_is_used(tree: str) -> None:
    """The JWT secret in the gateway alone; each Redis password in its process (and Redis)."""
    for name, owner in pod_owners(rendered(tree)).items():
        pod = owner["spec"]["template"]["spec"]
        mounted = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for volume in pod.get("volumes", []):
            # Readable by the pod's group (fsGroup), by no one else; YAML's 0440 is octal.
            assert volume.get("secret", {}).get("defaultMode", 0o440) == 0o440, volume
        for container in containers(owner):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    mounted.add(ref["name"])
        for secret in mounted:
            assert name in SECRET_USERS[secret], f"{secret} mounted in {name}"
        if name in PORTS:
            assert f"rt-redis-{name}" in mounted
            assert ("rt-jwt" in mounted) == (name == "gateway")


@pytest.mark.parametrize("tree", TREES)
def test_no_manifest_holds_a_real_secret(tree: str) -> None:
    """Only dev's placeholders are in manifests; production creates its Secrets itself."""
    found = of_kind(rendered(tree), "Secret")
    if tree != "overlays/dev":
        assert found == {}
        return
    assert set(found) == set(SECRET_USERS)
    for secret in found.values():
        assert "data" not in secret
        for value in secret["stringData"].values():
            assert value.startswith("dev-only-")
            assert value.endswith("-change-me")


def test_dev_runs_a_persistent_redis_with_the_acl_users() -> None:
    """The dev Redis keeps an append-only file on a volume and loads the processes' users."""
    manifests = rendered("overlays/dev")
    redis = of_kind(manifests, "StatefulSet")["redis"]
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--aclfile" in command
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert of_kind(manifests, "ConfigMap")["rt-redis"]["data"]["url"] == "redis://redis:6379/0"
    for name in PORTS:
        assert env_of(container_of(manifests, name))["RT_REDIS_USERNAME"]["value"] == f"rt-{name}"


def test_prod_uses_an_external_redis_and_an_image_pinned_by_digest() -> None:
    """No Redis in the namespace, TLS to it, and every container's image fixed by digest."""
    manifests = rendered("overlays/prod")
    assert of_kind(manifests, "StatefulSet") == {}
    assert of_kind(manifests, "ConfigMap")["rt-redis"]["data"]["url"].startswith("rediss://")
    for owner in pod_owners(manifests).values():
        for container in containers(owner):
            assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", container["image"])


@pytest.mark.parametrize("tree", ["overlays/dev", "overlays/prod"])
def test_the_ingress_keeps_websockets_open(tree: str) -> None:
    """The Ingress routes /ws to the gateway's Service with hour-long proxy timeouts."""
    manifests = rendered(tree)
    ingress = of_kind(manifests, "Ingress")["gateway"]
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/ws"
    backend = path["backend"]["service"]
    service = of_kind(manifests, "Service")[backend["name"]]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    assert selects(
        {"matchLabels": service["spec"]["selector"]}, {"app.kubernetes.io/name": "gateway"}
    )
