"""A fake Kubernetes API server for the `rendercluster k8s` commands' tests.

It answers, on 127.0.0.1 and a free port, exactly what `k8s status` and
`k8s submit-campaign` ask through the `kubernetes` client: RayServices of
ray.io/v1 (one by name, or listed by label), pods listed by label, and the
creation of a RayJob. Objects live in memory; every request is recorded, and
any of them can be made to fail with a Kubernetes `Status` answer (403, 500 ...).
Requests must carry the kubeconfig's bearer token, as a real server checks; a
body without a Content-Type is read as JSON, as the API server reads it (the
`kubernetes` client sends none when it creates a custom object).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TOKEN = "fake-token"
RAY_PREFIX = r"^/apis/ray\.io/v1/namespaces/(?P<ns>[^/]+)/(?P<plural>rayservices|rayjobs)"
ROUTES = {
    ("GET", re.compile(RAY_PREFIX + r"$")): "list_custom",
    ("GET", re.compile(RAY_PREFIX + r"/(?P<name>[^/]+)$")): "get_custom",
    ("POST", re.compile(RAY_PREFIX + r"$")): "create_custom",
    ("GET", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")): "list_pods",
}
KINDS = {"rayservices": "RayService", "rayjobs": "RayJob"}
Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Request:
    """One request the server received (`body` decoded from JSON, None if empty)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKubeAPI:
    """In-memory objects by (plural, namespace, name), the requests seen, failures to answer."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    failures: list[tuple[str, re.Pattern[str], int, str]] = field(default_factory=list)
    ray_crds_installed: bool = True
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a RayService, RayJob or Pod (its metadata must name its namespace)."""
        plural = {"RayService": "rayservices", "RayJob": "rayjobs", "Pod": "pods"}[obj["kind"]]
        meta = obj["metadata"]
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return obj

    def fail(self, method: str, path_pattern: str, status: int, message: str) -> None:
        """Answer requests whose method matches and path matches `path_pattern` with an error."""
        self.failures.append((method, re.compile(path_pattern), status, message))

    def received(self, method: str, path_pattern: str) -> list[Request]:
        """The requests seen with this method and a path matching `path_pattern`."""
        pattern = re.compile(path_pattern)
        return [r for r in self.requests if r.method == method and pattern.search(r.path)]

    # ------------------------------------------------------------ answers

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        """The status code and JSON document the API server would answer."""
        for fail_method, pattern, status, message in self.failures:
            if fail_method == method and pattern.search(path):
                return status, status_object(status, message)
        for (route_method, pattern), handler in ROUTES.items():
            found = pattern.match(path)
            if route_method != method or not found:
                continue
            params = {key: unquote(value) for key, value in found.groupdict().items()}
            if params.get("plural") and not self.ray_crds_installed:
                break
            return getattr(self, handler)(query=query, body=body, **params)
        return 404, status_object(404, "the server could not find the requested resource")

    def _matching(self, plural: str, ns: str, selector: str) -> list[dict[str, Any]]:
        wanted = parse_selector(selector)
        return [
            obj
            for (kind, namespace, _), obj in sorted(self.objects.items())
            if kind == plural
            and namespace == ns
            and wanted.items() <= obj["metadata"].get("labels", {}).items()
        ]

    def list_custom(self, *, ns: str, plural: str, query: dict[str, str], **_: Any) -> Reply:
        items = self._matching(plural, ns, query.get("labelSelector", ""))
        kind = f"{KINDS[plural]}List"
        return 200, {"apiVersion": "ray.io/v1", "kind": kind, "metadata": {}, "items": items}

    def get_custom(self, *, ns: str, plural: str, name: str, **_: Any) -> Reply:
        obj = self.objects.get((plural, ns, name))
        if obj is None:
            return 404, status_object(404, f'{plural}.ray.io "{name}" not found')
        return 200, obj

    def create_custom(self, *, ns: str, plural: str, body: Any, **_: Any) -> Reply:
        if not isinstance(body, dict) or body.get("kind") != KINDS[plural]:
            return 400, status_object(400, f"the body is not a {KINDS[plural]}")
        name = body.get("metadata", {}).get("name", "")
        if (plural, ns, name) in self.objects:
            return 409, status_object(409, f'{plural}.ray.io "{name}" already exists')
        created = json.loads(json.dumps(body))
        created["metadata"] |= {
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.objects[(plural, ns, name)] = created
        return 201, created

    def list_pods(self, *, ns: str, query: dict[str, str], **_: Any) -> Reply:
        items = self._matching("pods", ns, query.get("labelSelector", ""))
        meta = {"resourceVersion": "1"}
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": items}

    # ------------------------------------------------------------ serving

    def start(self) -> None:
        """Serve on 127.0.0.1 and a free port, in a daemon thread; sets `url`."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        serve = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        serve.start()

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kubeconfig(self, path: Path, namespace: str | None = None, token: str = TOKEN) -> Path:
        """Write a kubeconfig whose current context is this server (and `namespace`)."""
        context: dict[str, str] = {"cluster": "fake", "user": "ci"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "ci", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path


@contextmanager
def serving(api: FakeKubeAPI | None = None) -> Iterator[FakeKubeAPI]:
    """A started fake API server, stopped on exit."""
    api = api or FakeKubeAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()


def _handler_for(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            headers = {key.lower(): value for key, value in self.headers.items()}
            api.requests.append(Request(self.command, parts.path, query, headers, body))
            if headers.get("authorization") != f"Bearer {TOKEN}":
                status, answer = 401, status_object(401, "Unauthorized")
            elif isinstance(body, str):
                status, answer = 400, status_object(400, "the request body is not JSON")
            else:
                status, answer = api.answer(self.command, parts.path, query, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the tests read `api.requests` instead."""

    return Handler


def parse_selector(selector: str) -> dict[str, str]:
    """An equality label selector (`a=b,c==d`) as a mapping."""
    wanted = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        wanted[key] = value
    return wanted


def status_object(code: int, message: str) -> dict[str, Any]:
    """The `Status` document the API server sends with an error."""
    reason = HTTPStatus(code).phrase.replace(" ", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def pod(
    name: str, namespace: str, cluster: str, group: str, phase: str, image: str
) -> dict[str, Any]:
    """A KubeRay pod of `cluster`'s `group` (labelled as KubeRay labels them) in `phase`."""
    node_type = "head" if group == "headgroup" else "worker"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": "2026-01-05T09:30:00Z",
            "labels": {
                "ray.io/cluster": cluster,
                "ray.io/group": group,
                "ray.io/node-type": node_type,
                "app.kubernetes.io/created-by": "kuberay-operator",
            },
        },
        "spec": {"containers": [{"name": f"ray-{node_type}", "image": image}]},
        "status": {"phase": phase},
    }
