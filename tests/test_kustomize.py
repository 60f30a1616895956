"""devtools/kustomize.py: the subset of kustomize that renders deploy/k8s, as kustomize does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.kustomize import KustomizeError, merge, render


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "chat", "labels": {"app": "chat"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "chat",
                        "image": "realtime:0.1.0",
                        "args": ["a", "b"],
                        "env": [{"name": "RT_A", "value": "1"}, {"name": "RT_B", "value": "2"}],
                    },
                    {"name": "sidecar", "image": "registry:5000/tools/sidecar:1"},
                ]
            }
        },
    },
}


def write(directory: Path, name: str, *documents: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump_all(documents))


def test_merge_merges_containers_and_env_by_name_and_replaces_other_lists() -> None:
    """Containers and variables merge item by item; args, an ordinary list, is replaced."""
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "chat",
                            "args": ["c"],
                            "env": [{"name": "RT_B", "value": "3"}, {"name": "RT_C", "value": "4"}],
                        }
                    ]
                }
            }
        }
    }
    merged = merge(DEPLOYMENT, patch)
    chat, sidecar = merged["spec"]["template"]["spec"]["containers"]
    assert chat["image"] == "realtime:0.1.0"
    assert chat["args"] == ["c"]
    assert chat["env"] == [
        {"name": "RT_A", "value": "1"},
        {"name": "RT_B", "value": "3"},
        {"name": "RT_C", "value": "4"},
    ]
    assert sidecar["name"] == "sidecar"
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["args"] == ["a", "b"]


def test_merge_deletes_a_key_set_to_null_and_an_item_marked_delete() -> None:
    """``null`` removes a field and ``$patch: delete`` removes a list item, as in kustomize."""
    patch = {
        "spec": {
            "replicas": None,
            "template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}},
        }
    }
    merged = merge(DEPLOYMENT, patch)
    assert "replicas" not in merged["spec"]
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["chat"]


def test_render_applies_patches_images_replicas_and_namespace(tmp_path: Path) -> None:
    """An overlay over a base: its patch, image, replica count and namespace all land."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rt"}}
    write(tmp_path / "base", "app.yaml", namespace, DEPLOYMENT)
    write(tmp_path / "base", "kustomization.yaml", {"resources": ["app.yaml"]})
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat"},
        "spec": {"template": {"metadata": {"annotations": {"a": "b"}}}},
    }
    write(tmp_path / "overlay", "patch.yaml", patch)
    kustomization = {
        "namespace": "rt",
        "resources": ["../base"],
        "patches": [{"path": "patch.yaml"}],
        "images": [
            {"name": "realtime", "newName": "example.com/realtime", "newTag": "2"},
            {"name": "registry:5000/tools/sidecar", "digest": "sha256:" + "a" * 64},
        ],
        "replicas": [{"name": "chat", "count": 5}],
    }
    write(tmp_path / "overlay", "kustomization.yaml", kustomization)
    rendered_namespace, deployment = render(tmp_path / "overlay")
    assert "namespace" not in rendered_namespace["metadata"]
    assert deployment["metadata"]["namespace"] == "rt"
    assert deployment["spec"]["replicas"] == 5
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == ["example.com/realtime:2", "registry:5000/tools/sidecar@sha256:" + "a" * 64]


def test_render_deletes_a_resource_patched_with_delete(tmp_path: Path) -> None:
    """A whole-resource ``$patch: delete`` removes it from the output."""
    write(tmp_path, "app.yaml", DEPLOYMENT)
    delete = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat"}}
    write(tmp_path, "delete.yaml", {**delete, "$patch": "delete"})
    write(
        tmp_path,
        "kustomization.yaml",
        {"resources": ["app.yaml"], "patches": [{"path": "delete.yaml"}]},
    )
    assert render(tmp_path) == []


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ({"resources": ["app.yaml"], "commonLabels": {"a": "b"}}, "not supported"),
        ({"resources": ["missing.yaml"]}, "no such file"),
        ({"resources": ["app.yaml"], "replicas": [{"name": "gateway", "count": 1}]}, "no "),
    ],
)
def test_render_refuses_what_it_cannot_render(
    tmp_path: Path, kustomization: dict[str, Any], message: str
) -> None:
    """An unknown field, a missing file or a missing target fails rather than being skipped."""
    write(tmp_path, "app.yaml", DEPLOYMENT)
    write(tmp_path, "kustomization.yaml", kustomization)
    with pytest.raises(KustomizeError, match=message):
        render(tmp_path)
