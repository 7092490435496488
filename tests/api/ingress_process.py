"""The in-process API (tests.api.inprocess) served by uvicorn in a process of its own.

`python -m tests.api.ingress_process <store dir> <port>` serves the real routes over
the fakes of the Ray pieces on 127.0.0.1:<port>, with room for a 50 MB upload, the
way an ingress replica serves them: its own process, its own event loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import uvicorn

from serve import offload
from serve.api_app import api
from tests.api.inprocess import config_for, install

LIMITS = {"max_upload_bytes": 60 * 2**20, "max_body_bytes": 80 * 2**20}


def main(root: Path, port: int) -> None:
    install(config_for(root, limits=LIMITS), pytest.MonkeyPatch())
    offload.warm("core.campaign.submit")  # as the ingress does when it starts
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
