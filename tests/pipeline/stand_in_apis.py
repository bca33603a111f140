"""HTTP stand-ins on 127.0.0.1 for the two APIs `submit` talks to, which cannot run here: a
multi-user Kubeflow Pipelines API (v2beta1) that refuses requests without the expected bearer
token as the real one does, and the few Kubernetes API paths the preflight reads and writes. The
real clients (kfp.Client, the kubernetes package) talk to them over HTTP; each records the
requests it saw."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def do_GET(self):
        self.server.answer(self, "GET", {})

    def do_POST(self):
        self.server.answer(self, "POST", self._body())


class KfpApi(ThreadingHTTPServer):
    """Multi-user KFP: healthz open, everything else 401 "no user identity" without
    `Bearer TOKEN`; with it, it creates experiments and runs and keeps what it was sent."""

    def __init__(self, token: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token, self.requests = token, []

    def answer(self, handler: _Handler, method: str, body: dict) -> None:
        self.requests.append(
            {
                "method": method,
                "path": handler.path,
                "body": body,
                "authorization": handler.headers.get("Authorization"),
            }
        )
        if handler.path.startswith("/apis/v2beta1/healthz"):
            return handler._reply(200, {"multi_user": True})
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return handler._reply(
                401,
                {
                    "code": 16,
                    "message": "Request header error: there is no user identity header.",
                    "details": [],
                },
            )
        if "/experiments" in handler.path and method == "GET":
            return handler._reply(200, {"experiments": [], "total_size": 0})
        if "/experiments" in handler.path:
            return handler._reply(200, {"experiment_id": "experiment-1", **body})
        if "/runs" in handler.path:
            return handler._reply(
                200, {"run_id": "run-1", "display_name": body.get("display_name")}
            )
        handler._reply(404, {"code": 5, "message": f"no route {handler.path}"})


class KubernetesApi(ThreadingHTTPServer):
    """Secrets, persistent volume claims and storage classes of one namespace, in memory."""

    def __init__(
        self,
        secrets: dict[str, str],
        claims: dict[str, list[str]],
        storage_classes: dict[str, bool],
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secrets = secrets  # name -> type
        self.claims = claims  # name -> access modes
        self.storage_classes = storage_classes  # name -> is the default
        self.created = []

    def answer(self, handler: _Handler, method: str, body: dict) -> None:
        path = handler.path.split("?")[0]
        if path == "/apis/storage.k8s.io/v1/storageclasses":
            return handler._reply(
                200,
                {
                    "kind": "StorageClassList",
                    "apiVersion": "storage.k8s.io/v1",
                    "metadata": {},
                    "items": [
                        {
                            "metadata": {
                                "name": name,
                                "annotations": {
                                    "storageclass.kubernetes.io/is-default-class": str(
                                        default
                                    ).lower()
                                },
                            },
                            "provisioner": "example.com/disk",
                        }
                        for name, default in self.storage_classes.items()
                    ],
                },
            )
        match = re.fullmatch(
            r"/api/v1/namespaces/([^/]+)/(secrets|persistentvolumeclaims)(?:/([^/]+))?", path
        )
        if not match:
            return handler._reply(404, {"kind": "Status", "code": 404, "message": path})
        namespace, kind, name = match.groups()
        if method == "POST":
            self.created.append(body)
            self.claims[body["metadata"]["name"]] = body["spec"]["accessModes"]
            return handler._reply(201, body)
        if kind == "secrets" and name in self.secrets:
            return handler._reply(
                200,
                {"metadata": {"name": name, "namespace": namespace}, "type": self.secrets[name]},
            )
        if kind == "persistentvolumeclaims" and name in self.claims:
            return handler._reply(
                200,
                {
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"accessModes": self.claims[name]},
                },
            )
        handler._reply(
            404,
            {
                "kind": "Status",
                "code": 404,
                "reason": "NotFound",
                "message": f'{kind} "{name}" not found',
            },
        )


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
