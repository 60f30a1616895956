"""The gateway serves the browser demo (its page at /, its folder at /demo/) and the JavaScript
client's modules at /client/, nothing else."""

from __future__ import annotations

import http.client

import pytest

from realtime_gateway.app import CLIENT_FILES, STATIC
from tests.e2e.conftest import Launcher
from tests.support.processes import REPO_ROOT, ManagedProcess, wait_all_ready


CLIENT_DIR = REPO_ROOT / "clients" / "js"


@pytest.fixture(scope="module")
def gateways(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway in development mode and one outside it."""
    dev = launcher.gateway({"RT_DEV": "1"}, wait=False)
    plain = launcher.gateway(wait=False)
    wait_all_ready([dev, plain])
    return dev, plain


def raw_get(gateway: ManagedProcess, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("dev", "mode"), [(True, "dev"), (False, "token")])
def test_the_page_says_whether_the_gateway_is_in_development_mode(
    gateways: tuple[ManagedProcess, ManagedProcess], dev: bool, mode: str
) -> None:
    """/ is the demo's page, marked with the gateway's mode so that it never has to probe."""
    status, content_type, body = raw_get(gateways[0 if dev else 1], "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert f'<body data-mode="{mode}">'.encode() in body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("chat.js", "text/javascript; charset=utf-8"),
        ("demo.css", "text/css; charset=utf-8"),
    ],
)
def test_demo_files_are_served_with_their_type(
    gateways: tuple[ManagedProcess, ManagedProcess], name: str, content_type: str
) -> None:
    """Each file of the demo folder is served with the content type a browser needs."""
    status, served_type, body = raw_get(gateways[1], f"/demo/{name}")
    assert (status, served_type) == (200, content_type)
    assert body


@pytest.mark.parametrize(
    "path",
    [
        "/demo/missing.js",
        "/demo/../app.py",
        "/demo/..%2fapp.py",
        "/demo/%2e%2e/app.py",
        "/demo/.hidden.js",
        "/demo/index.py",
        "/demo/sub/app.js",
        "/demo/",
        "/static/demo/app.js",
    ],
)
def test_nothing_outside_the_demo_folder_is_served(
    gateways: tuple[ManagedProcess, ManagedProcess], path: str
) -> None:
    """Paths that leave the folder, hidden or unknown files, and subfolders are all 404."""
    status, _, body = raw_get(gateways[1], path)
    assert status == 404, body[:200]


def test_every_client_module_is_linked_into_the_package_and_served() -> None:
    """Each module of clients/js and its types is linked into static/client and in the table
    of served files, so that a browser loading /client/realtime.js finds every import."""
    committed = {path.name for path in CLIENT_DIR.iterdir() if path.name.endswith((".js", ".d.ts"))}
    linked = {path.name: path for path in (STATIC / "client").iterdir()}
    assert set(CLIENT_FILES) == committed == set(linked)
    for name, path in linked.items():
        assert path.is_symlink(), name
        assert path.resolve() == (CLIENT_DIR / name).resolve(), name


@pytest.mark.parametrize("name", sorted(CLIENT_FILES))
def test_client_files_are_served_with_their_type(
    gateways: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """Each file of the client is served at /client/ as committed, with its content type."""
    status, served_type, body = raw_get(gateways[1], f"/client/{name}")
    assert (status, served_type) == (200, CLIENT_FILES[name])
    assert body == (CLIENT_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/client/package.json", "/client/tsconfig.json", "/client/test/support.js"]
)
def test_nothing_else_of_the_client_folder_is_served(
    gateways: tuple[ManagedProcess, ManagedProcess], path: str
) -> None:
    """Files of clients/js that are not the client's modules or types are 404."""
    status, _, body = raw_get(gateways[1], path)
    assert status == 404, body[:200]
