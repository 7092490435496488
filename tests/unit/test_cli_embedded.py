"""An embedded cluster's shutdown: what Ray prints while it stops goes to stderr, so a
command's stdout (its --json) stays parseable. No Ray: the cluster is a stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import serve.local_cluster
from cli.embedded import cluster_url


class ChattyCluster:
    """Prints a raylet-style line on shutdown, as Ray's log monitor does."""

    url = "http://127.0.0.1:1"

    def shutdown(self) -> None:
        print("(raylet) Task ServeController.listen_for_change failed.")


def test_shutdown_lines_go_to_stderr_not_stdout(monkeypatch, capsys):
    monkeypatch.setattr(serve.local_cluster, "start_local_cluster", lambda *a, **k: ChattyCluster())
    with cluster_url(None, Path("configs/local.yaml"), 1) as url:
        print(json.dumps({"url": url}))
    out, err = capsys.readouterr()
    assert json.loads(out) == {"url": "http://127.0.0.1:1"}
    assert "(raylet) Task ServeController" in err
