"""A job survives the loss of the node that runs its router and some of its replicas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import free_port

SCRIPT = Path(__file__).with_name("multinode_job.py")


def test_removing_the_routers_node_leaves_the_job_to_finish_on_the_other(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(free_port())],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "done", outcome
    assert outcome["attempts"] >= 2, outcome  # the router died with its node
    assert outcome["replicas_on_removed_node"] >= 1, outcome
    assert outcome["tiles_reused"] >= 2, outcome
