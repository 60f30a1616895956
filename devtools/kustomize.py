"""A small kustomize: renders deploy/k8s's overlays as ``kubectl kustomize`` would, offline.

kustomize is a Go program that no registry this project installs from ships, so the tests
render the manifests with this subset of it, which fails on any field it does not know
rather than ignoring it: ``resources`` (files, or directories holding a kustomization),
``patches`` (strategic-merge patches by ``path``, each naming its target by ``kind`` and
``metadata.name``), ``images``, ``replicas`` and ``namespace``. Strategic merge follows
Kubernetes' merge keys for the lists the manifests patch (containers and volumes by name,
environment variables by name, mounts by path, ports by number); any other list is
replaced, and a ``null`` value deletes its key, as in kustomize.

Run ``python -m devtools.kustomize DIR`` to print an overlay's manifests.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


__all__ = ["KustomizeError", "Manifest", "main", "merge", "render"]

Manifest = dict[str, Any]

KNOWN_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "patches", "images", "replicas"}
)
#: The merge key of each list field that strategic merge merges item by item.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
#: Kinds that have no namespace, left alone by ``namespace``.
CLUSTER_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"})
POD_OWNERS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


class KustomizeError(Exception):
    """A kustomization this renderer cannot render (or that kustomize would refuse)."""


def render(directory: Path) -> list[Manifest]:
    """Every manifest of the kustomization in ``directory``, with its transformations applied.

    Raises:
        KustomizeError: an unknown field, a missing file, or a patch without a target.
    """
    kustomization = _load_one(directory / "kustomization.yaml")
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: fields not supported: {sorted(unknown)}")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            manifests += render(path)
        else:
            manifests += _load_all(path)
    for patch in kustomization.get("patches", []):
        for document in _load_all(directory / patch["path"]):
            _apply_patch(manifests, document)
    for image in kustomization.get("images", []):
        for container in _containers(manifests):
            _set_image(container, image)
    for replicas in kustomization.get("replicas", []):
        _target(manifests, None, replicas["name"], POD_OWNERS)["spec"]["replicas"] = replicas[
            "count"
        ]
    namespace = kustomization.get("namespace")
    if namespace is not None:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_KINDS:
                manifest["metadata"]["namespace"] = namespace
    return manifests


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``base`` as a strategic-merge patch (neither is changed)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    merge_key = _merge_key(field, base, patch)
    if merge_key is None:
        return copy.deepcopy(patch)
    merged_items = list(base)
    for item in patch:
        positions = [i for i, old in enumerate(merged_items) if old[merge_key] == item[merge_key]]
        if item.get("$patch") == "delete":
            merged_items = [old for i, old in enumerate(merged_items) if i not in positions]
        elif positions:
            merged_items[positions[0]] = merge(merged_items[positions[0]], item)
        else:
            merged_items.append(copy.deepcopy(item))
    return merged_items


def _merge_key(field: str, base: Any, patch: Any) -> str | None:
    if not (isinstance(base, list) and isinstance(patch, list)):
        return None
    if field == "ports":
        # Container ports merge by containerPort, a Service's by port.
        items = [*base, *patch]
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    return MERGE_KEYS.get(field)


def _apply_patch(manifests: list[Manifest], patch: Manifest) -> None:
    metadata = patch.get("metadata", {})
    if "kind" not in patch or "name" not in metadata:
        raise KustomizeError(f"a patch needs kind and metadata.name: {patch}")
    target = _target(manifests, patch["kind"], metadata["name"])
    if patch.get("$patch") == "delete":
        manifests.remove(target)
        return
    manifests[manifests.index(target)] = merge(target, patch)


def _target(
    manifests: list[Manifest], kind: str | None, name: str, kinds: frozenset[str] = frozenset()
) -> Manifest:
    for manifest in manifests:
        kind_matches = manifest["kind"] == kind if kind else manifest["kind"] in kinds
        if kind_matches and manifest["metadata"]["name"] == name:
            return manifest
    raise KustomizeError(f"no {kind or '/'.join(sorted(kinds))} named {name!r} to patch")


def _containers(manifests: list[Manifest]) -> Iterator[dict[str, Any]]:
    for manifest in manifests:
        if manifest["kind"] in POD_OWNERS:
            pod = manifest["spec"]["template"]["spec"]
            yield from pod.get("initContainers", [])
            yield from pod["containers"]


def _set_image(container: dict[str, Any], image: dict[str, str]) -> None:
    reference: str = container["image"]
    name = _image_name(reference)
    if name != image["name"]:
        return
    new_name = image.get("newName", name)
    if "digest" in image:
        container["image"] = f"{new_name}@{image['digest']}"
    elif "newTag" in image:
        container["image"] = f"{new_name}:{image['newTag']}"
    else:
        container["image"] = new_name + reference.removeprefix(name)


def _image_name(reference: str) -> str:
    """``registry:5000/realtime`` of ``registry:5000/realtime:0.1.0`` (or ``...@sha256:...``)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last) + last.index(":")] if ":" in last else name


def _load_one(path: Path) -> Manifest:
    documents = _load_all(path)
    if len(documents) != 1:
        raise KustomizeError(f"{path}: one document expected, found {len(documents)}")
    return documents[0]


def _load_all(path: Path) -> list[Manifest]:
    if not path.is_file():
        raise KustomizeError(f"{path}: no such file")
    with path.open(encoding="utf-8") as stream:
        return [document for document in yaml.safe_load_all(stream) if document is not None]


def main(argv: list[str]) -> int:
    """Print the manifests of the kustomization in ``argv[0]`` as one YAML stream."""
    if len(argv) != 1:
        print("usage: python -m devtools.kustomize DIRECTORY", file=sys.stderr)
        return 2
    yaml.safe_dump_all(render(Path(argv[0])), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
