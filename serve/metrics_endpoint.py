"""``rendercluster up --metrics-port N``: the application's metrics on 127.0.0.1:N/metrics.

Ray's exporter serves every metric of the cluster with a ``ray_`` prefix. This
endpoint fetches it on each scrape and passes on only the application's own
(`core.telemetry`), named as they are defined: ``rendercluster_...`` (the chart's
ServiceMonitor renames them the same way when Prometheus scrapes Ray's port).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["MetricsEndpoint", "own_metrics"]

RAY_PREFIX = "ray_"
OWN_PREFIX = "rendercluster_"


def own_metrics(exposition: str) -> str:
    """The ``ray_rendercluster_*`` samples and their HELP/TYPE lines of a Prometheus text
    exposition, without the ``ray_`` prefix."""
    kept = []
    for line in exposition.splitlines():
        name = line.split(" ", 3)[2] if line.startswith("# ") else line
        if name.startswith(RAY_PREFIX + OWN_PREFIX):
            kept.append(line.replace(RAY_PREFIX + OWN_PREFIX, OWN_PREFIX, 1))
    return "\n".join(kept) + "\n"


class MetricsEndpoint:
    """Serves `own_metrics` of Ray's exporter at ``http://127.0.0.1:<port>/metrics``."""

    def __init__(self, port: int, ray_export_port: int):
        source = f"http://127.0.0.1:{ray_export_port}/metrics"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                try:
                    body = own_metrics(httpx.get(source, timeout=10).text).encode()
                except httpx.HTTPError:
                    self.send_error(503, "Ray's metrics exporter is not answering")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not news
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
