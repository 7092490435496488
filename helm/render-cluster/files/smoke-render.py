"""`helm test`: render one small PNG through the deployed API and check what comes back.

Standard library only. Reads RENDER_URL (the Serve Service), RENDER_REQUEST (the JSON
body of POST /v1/renders), RENDER_API_KEY (optional; of comma-separated keys the first
is used) and RENDER_TIMEOUT_S. Waits for GET /healthz while the cluster starts, retries
a render refused with 429 or 503 (replicas still starting), and exits 1 with the reason
for anything else: an error answer, something that is not a PNG, or the wrong size.
"""

import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RETRIED = {429, 502, 503, 504}
POLL_S = 5.0


def call(request: urllib.request.Request, deadline: float) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; status 0 when nothing answered."""
    timeout = max(1.0, deadline - time.monotonic())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except OSError as exc:  # refused, reset, DNS, timeout (URLError is an OSError)
        return 0, "", str(getattr(exc, "reason", exc)).encode()


def until_answered(
    request: urllib.request.Request, deadline: float, retried: set[int]
) -> tuple[int, str, bytes]:
    """Repeat `request` while nothing answers or the status is in `retried`."""
    while True:
        status, content_type, body = call(request, deadline)
        if status and status not in retried:
            return status, content_type, body
        if time.monotonic() + POLL_S >= deadline:
            return status, content_type, body
        shown = f"HTTP {status}" if status else body.decode(errors="replace")
        print(f"waiting for {request.full_url}: {shown}", flush=True)
        time.sleep(POLL_S)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; ValueError when `data` is no PNG."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError(f"not a PNG (starts with {data[:16]!r})")
    return struct.unpack(">II", data[16:24])


def main() -> str | None:
    """None when the render checks out, else what went wrong."""
    base = os.environ["RENDER_URL"].rstrip("/")
    body = json.loads(os.environ["RENDER_REQUEST"])
    key = os.environ.get("RENDER_API_KEY", "").split(",")[0].strip()
    deadline = time.monotonic() + float(os.environ.get("RENDER_TIMEOUT_S", "900"))
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    health = urllib.request.Request(f"{base}/healthz", headers=headers)
    status, _, answer = until_answered(health, deadline, RETRIED | {404})
    if status != 200:
        return f"GET {base}/healthz: {status or 'no answer'} {answer[:300]!r}"

    headers |= {"Content-Type": "application/json", "Accept": "image/png"}
    data = json.dumps(body).encode()
    render = urllib.request.Request(f"{base}/v1/renders", data, headers, method="POST")
    started = time.monotonic()
    status, content_type, answer = until_answered(render, deadline, RETRIED)
    if status != 200:
        return f"POST {base}/v1/renders: {status or 'no answer'} {answer[:500]!r}"
    if not content_type.startswith("image/png"):
        return f"POST /v1/renders answered {content_type!r}, not image/png"
    try:
        size = png_size(answer)
    except ValueError as exc:
        return str(exc)
    if size != (body["width"], body["height"]):
        return f"the PNG is {size[0]}x{size[1]}, not {body['width']}x{body['height']}"
    elapsed = time.monotonic() - started
    print(f"rendered a {size[0]}x{size[1]} PNG ({len(answer)} bytes) in {elapsed:.1f} s")
    return None


if __name__ == "__main__":
    problem = main()
    if problem:
        print(f"helm test failed: {problem}", file=sys.stderr)
        sys.exit(1)
