"""A local HTTP double of the four providers' image APIs, for unit and integration tests.

`ProviderDouble` listens on 127.0.0.1 (a free port) and speaks:

- OpenAI Images under ``/openai/v1`` (``/images/generations`` JSON, ``/images/edits``
  multipart; ``Authorization: Bearer``);
- Ideogram under ``/ideogram`` (``/generate`` JSON, ``/remix`` and ``/edit`` multipart,
  ``/v1/ideogram-v3/{generate,remix,edit}`` multipart; ``Api-Key``), answering image
  URLs served by the double itself;
- Imagen (``:predict``) and Gemini (``:generateContent``) under ``/google/v1beta``
  (``x-goog-api-key``).

Every request is checked against the shape and headers the provider documents; a
wrong one is answered 400 and listed in `violations`. Answers have each provider's
shape, with a PNG of the size the provider would return. Faults on demand:

- `fail_next(provider, *faults)`: the next requests to that provider answer, in order,
  ``"429"`` (with ``Retry-After``, ``"429:2"`` for 2 s), ``"500"``, ``"malformed"``
  (200 with a body that is not JSON), ``"refuse"`` (the provider's content-policy
  refusal) or ``"slow:<s>"`` (a normal answer after s seconds);
- a prompt containing ``FORBIDDEN`` is refused, one containing ``SLOW`` answers after
  `slow_s`.

`in_flight` / `max_in_flight` count requests being answered, per provider.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

KEY = "test-provider-key-0123456789"
OPENAI_SIZES = {
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
IMAGEN = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
          "9:16": (768, 1408), "16:9": (1408, 768)}  # fmt: skip
GEMINI = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
          "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
          "16:9": (1344, 768), "21:9": (1536, 672)}  # fmt: skip
IDEOGRAM_V3 = {"1x1", "1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10",
               "2x3", "3x2", "3x4", "4x3", "4x5", "5x4"}  # fmt: skip
IDEOGRAM_LEGACY = {f"ASPECT_{r}" for r in ("1_1", "10_16", "16_10", "9_16", "16_9", "3_2",
                                            "2_3", "4_3", "3_4", "1_3", "3_1")}  # fmt: skip


class Violation(Exception):
    """The request does not have the shape the provider documents."""


@dataclass
class Seen:
    """One request the double answered."""

    provider: str
    endpoint: str
    headers: dict[str, str]
    body: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    started: float = 0.0
    ended: float = 0.0


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A deterministic, non-blank RGB test image."""
    ys, xs = np.mgrid[0:height, 0:width]
    blocks = ((xs // 64 + ys // 64 + seed) % 2) * 40
    image = np.stack(
        [xs * 200 // max(width - 1, 1) + blocks, ys * 200 // max(height - 1, 1) + blocks,
         np.full_like(xs, 90 + seed % 60)], axis=-1,
    ).astype(np.uint8)  # fmt: skip
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def ratio_size(label: str, separator: str) -> tuple[int, int]:
    """What Ideogram returns for a ratio: about a megapixel, sides multiples of 16."""
    a, b = (int(x) for x in label.removeprefix("ASPECT_").split(separator))
    return round(math.sqrt(2**20 * a / b) / 16) * 16, round(math.sqrt(2**20 * b / a) / 16) * 16


class ProviderDouble:
    """The double's state; `start()` serves it on 127.0.0.1 (see the module)."""

    def __init__(self, latency_s: float = 0.0, slow_s: float = 3.0, key: str = KEY):
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.key = key
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self._images: dict[str, bytes] = {}
        self._png_cache: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------

    def start(self) -> ProviderDouble:
        double = self

        class Handler(_Handler):
            state = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def base_url(self, provider: str) -> str:
        """The `remote.base_url` of a model served by this double."""
        return {
            "openai": f"{self.url}/openai/v1",
            "ideogram": f"{self.url}/ideogram",
            "imagen": f"{self.url}/google/v1beta",
            "gemini": f"{self.url}/google/v1beta",
        }[provider]

    def fail_next(self, provider: str, *faults: str) -> None:
        with self._lock:
            self._faults[provider].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.violations.clear()
            self.max_in_flight.clear()
            self._faults.clear()

    def requests_to(self, provider: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.provider == provider]

    # -- answering ----------------------------------------------------------------------

    def image(self, width: int, height: int) -> bytes:
        with self._lock:
            if (width, height) not in self._png_cache:
                self._png_cache[(width, height)] = png(width, height, seed=width * 7 + height)
            return self._png_cache[(width, height)]

    def next_fault(self, provider: str, prompt: str) -> str | None:
        with self._lock:
            if self._faults[provider]:
                return self._faults[provider].popleft()
        if "FORBIDDEN" in prompt:
            return "refuse"
        if "SLOW" in prompt:
            return f"slow:{self.slow_s}"
        return None

    def image_url(self, data: bytes) -> str:
        with self._lock:
            name = f"img-{len(self._images)}"
            self._images[name] = data
        return f"{self.url}/ideogram/ephemeral/{name}.png"

    def stored_image(self, name: str) -> bytes | None:
        with self._lock:
            return self._images.get(name)

    def enter(self, provider: str) -> None:
        with self._lock:
            self.in_flight[provider] += 1
            self.max_in_flight[provider] = max(
                self.max_in_flight[provider], self.in_flight[provider]
            )

    def leave(self, provider: str, seen: Seen | None) -> None:
        with self._lock:
            self.in_flight[provider] -= 1
            if seen is not None:
                seen.ended = time.monotonic()
                self.seen.append(seen)


class _Handler(BaseHTTPRequestHandler):
    state: ProviderDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1].removesuffix(".png")
        data = self.state.stored_image(name) if "/ideogram/ephemeral/" in self.path else None
        if data is None:
            self._send(404, b'{"error": "not found"}')
        else:
            self._send(200, data, "image/png")

    def do_POST(self) -> None:
        provider = _provider_of(self.path)
        started = time.monotonic()
        self.state.enter(provider)
        seen = None
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length", 0))
            raw = self.rfile.read(length)
            body, files = _decode_body(headers.get("content-type", ""), raw)
            seen = Seen(provider, self.path, headers, body, files, started)
            status, payload, extra = _answer(self.state, provider, self.path, seen)
        except Violation as exc:
            self.state.violations.append(f"{self.path}: {exc}")
            status, payload, extra = 400, _json({"error": {"message": f"double: {exc}"}}), {}
        finally:
            self.state.leave(provider, seen)
        self._send(status, payload, extra=extra)

    def _send(
        self, status: int, payload: bytes, kind: str = "application/json", extra: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the caller timed out and left
            self.close_connection = True


def _provider_of(path: str) -> str:
    if path.startswith("/openai/"):
        return "openai"
    if path.startswith("/ideogram/"):
        return "ideogram"
    return "imagen" if path.endswith(":predict") else "gemini"


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def _decode_body(content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    if content_type.startswith("application/json"):
        try:
            return json.loads(raw), {}
        except ValueError as exc:
            raise Violation(f"body is not JSON ({exc})") from None
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                files[name] = payload
            else:
                fields[name] = payload.decode()
        return fields, files
    raise Violation(f"unexpected Content-Type {content_type!r}")


def _answer(
    state: ProviderDouble, provider: str, path: str, seen: Seen
) -> tuple[int, bytes, dict[str, str]]:
    _check_key(state, provider, seen.headers)
    checker, answer = PROVIDERS[provider]
    size, prompt = checker(path, seen)
    fault = state.next_fault(provider, prompt)
    if state.latency_s:
        time.sleep(state.latency_s)
    if fault is not None and fault.startswith("slow:"):
        time.sleep(float(fault.split(":")[1]))
        fault = None
    if fault is not None and fault.startswith("429"):
        retry_after = fault.partition(":")[2] or "1"
        body = _json({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})
        return 429, body, {"Retry-After": retry_after}
    if fault == "500":
        return 500, _json({"error": {"message": "The server had an error"}}), {}
    if fault == "malformed":
        return 200, b'{"data": [{"b64_json": ', {}
    return answer(state, seen, size, refuse=fault == "refuse")


def _check_key(state: ProviderDouble, provider: str, headers: dict[str, str]) -> None:
    expected = {
        "openai": ("authorization", f"Bearer {state.key}"),
        "ideogram": ("api-key", state.key),
        "imagen": ("x-goog-api-key", state.key),
        "gemini": ("x-goog-api-key", state.key),
    }[provider]
    if headers.get(expected[0]) != expected[1]:
        raise Violation(f"header {expected[0]} is missing or wrong")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


def _png_size(data: bytes, what: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            _require(image.format == "PNG", f"{what} is not a PNG")
            return image.size
    except OSError:
        raise Violation(f"{what} is not an image") from None


# -- OpenAI -----------------------------------------------------------------------------


def _openai_check(path: str, seen: Seen) -> tuple[tuple[int, int], str]:
    body = seen.body
    model = body.get("model")
    _require(model in OPENAI_SIZES, f"unknown model {model!r}")
    _require(isinstance(body.get("prompt"), str) and body["prompt"], "prompt is required")
    _require(str(body.get("n", 1)) == "1", "n must be 1")
    _require(body.get("size") in OPENAI_SIZES[model], f"size {body.get('size')!r} for {model}")
    if model.startswith("dall-e"):
        _require(body.get("response_format") == "b64_json", "ask DALL·E for b64_json")
    if path.endswith("/images/edits"):
        _require(model != "dall-e-3", "dall-e-3 has no edit API")
        _require("image" in seen.files, "edits need the image file")
        image_size = _png_size(seen.files["image"], "image")
        if "mask" in seen.files:
            with Image.open(io.BytesIO(seen.files["mask"])) as mask:
                _require(mask.mode == "RGBA", "the mask needs an alpha channel")
                _require(mask.size == image_size, "the mask is not the image's size")
        else:
            _require(model.startswith("gpt-image"), f"{model} edits need a mask")
    else:
        _require(path.endswith("/images/generations"), f"unknown endpoint {path}")
    width, height = (int(v) for v in body["size"].split("x"))
    return (width, height), body["prompt"]


def _openai_answer(state: ProviderDouble, seen: Seen, size: tuple[int, int], refuse: bool):
    if refuse:
        error = {
            "code": "content_policy_violation",
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
        }
        return 400, _json({"error": error}), {"x-request-id": "req_refused"}
    item: dict[str, Any] = {"b64_json": base64.b64encode(state.image(*size)).decode()}
    if seen.body.get("model") == "dall-e-3":
        item["revised_prompt"] = f"A detailed rendering of {seen.body['prompt']}"
    request_id = f"req_{len(state.seen):06d}"
    return 200, _json({"created": int(time.time()), "data": [item]}), {"x-request-id": request_id}


# -- Ideogram ---------------------------------------------------------------------------


def _ideogram_check(path: str, seen: Seen) -> tuple[tuple[int, int], str]:
    body, endpoint = seen.body, path.removeprefix("/ideogram")
    if endpoint.startswith("/v1/ideogram-v3/"):
        _require(seen.headers["content-type"].startswith("multipart/form-data"), "V3 is a form")
        _require(body.get("rendering_speed") in ("TURBO", "DEFAULT", "QUALITY"), "rendering_speed")
        prompt = body.get("prompt", "")
        kind = endpoint.rsplit("/", 1)[-1]
        _require(kind in ("generate", "remix", "edit"), f"unknown endpoint {endpoint}")
        if kind == "edit":
            return _ideogram_edit_size(seen, "image"), prompt
        _require(
            body.get("aspect_ratio") in IDEOGRAM_V3, f"aspect_ratio {body.get('aspect_ratio')}"
        )
        if kind == "remix":
            _require("image" in seen.files, "remix needs the image")
            _require(1 <= int(body.get("image_weight", 50)) <= 100, "image_weight 1-100")
        size = ratio_size(body["aspect_ratio"], "x")
    elif endpoint == "/generate":
        request = body.get("image_request") or {}
        prompt = request.get("prompt", "")
        _require(request.get("model", "").startswith("V_"), "image_request.model")
        _require(request.get("aspect_ratio") in IDEOGRAM_LEGACY, "image_request.aspect_ratio")
        size = ratio_size(request["aspect_ratio"], "_")
    elif endpoint == "/remix":
        request = json.loads(body.get("image_request", "{}"))
        prompt = request.get("prompt", "")
        _require("image_file" in seen.files, "remix needs image_file")
        _require(request.get("aspect_ratio") in IDEOGRAM_LEGACY, "image_request.aspect_ratio")
        size = ratio_size(request["aspect_ratio"], "_")
    elif endpoint == "/edit":
        prompt = body.get("prompt", "")
        _require(body.get("model") in ("V_2", "V_2_TURBO"), "edit takes V_2 or V_2_TURBO")
        return _ideogram_edit_size(seen, "image_file"), prompt
    else:
        raise Violation(f"unknown endpoint {endpoint}")
    _require(bool(prompt), "prompt is required")
    return size, prompt


def _ideogram_edit_size(seen: Seen, image_field: str) -> tuple[int, int]:
    _require(image_field in seen.files and "mask" in seen.files, "edit needs image and mask")
    size = _png_size(seen.files[image_field], image_field)
    _require(_png_size(seen.files["mask"], "mask") == size, "the mask is not the image's size")
    _require(bool(seen.body.get("prompt")), "prompt is required")
    return size


def _ideogram_answer(state: ProviderDouble, seen: Seen, size: tuple[int, int], refuse: bool):
    if refuse:
        return 422, _json({"error": "Prompt or provided image failed the safety checks"}), {}
    request = seen.body.get("image_request")
    request = json.loads(request) if isinstance(request, str) else request or seen.body
    item = {
        "url": state.image_url(state.image(*size)),
        "seed": int(request.get("seed", 12345)),
        "prompt": f"{request.get('prompt')}, crisp typography",
        "resolution": f"{size[0]}x{size[1]}",
        "is_image_safe": True,
        "style_type": "GENERAL",
    }
    return 200, _json({"created": "2025-01-01T00:00:00Z", "data": [item]}), {}


# -- Imagen and Gemini ------------------------------------------------------------------


def _imagen_check(path: str, seen: Seen) -> tuple[tuple[int, int], str]:
    _require("/models/" in path and path.endswith(":predict"), f"unknown endpoint {path}")
    instances, parameters = seen.body.get("instances"), seen.body.get("parameters") or {}
    _require(isinstance(instances, list) and len(instances) == 1, "one instance")
    prompt = instances[0].get("prompt", "")
    _require(bool(prompt), "instances[0].prompt is required")
    _require(parameters.get("sampleCount") == 1, "sampleCount 1")
    ratio = parameters.get("aspectRatio")
    _require(ratio in IMAGEN, f"aspectRatio {ratio!r}")
    tier = parameters.get("sampleImageSize", "1K")
    _require(tier in ("1K", "2K"), f"sampleImageSize {tier!r}")
    scale = 2 if tier == "2K" else 1
    return (IMAGEN[ratio][0] * scale, IMAGEN[ratio][1] * scale), prompt


def _imagen_answer(state: ProviderDouble, seen: Seen, size: tuple[int, int], refuse: bool):
    if refuse:
        filtered = {"raiFilteredReason": "Your current safety filter threshold filtered out "
                    "the generated image. (code 58061214)"}  # fmt: skip
        return 200, _json({"predictions": [filtered]}), {}
    data = base64.b64encode(state.image(*size)).decode()
    return 200, _json({"predictions": [{"bytesBase64Encoded": data, "mimeType": "image/png"}]}), {}


def _gemini_check(path: str, seen: Seen) -> tuple[tuple[int, int], str]:
    _require(path.endswith(":generateContent"), f"unknown endpoint {path}")
    contents = seen.body.get("contents")
    _require(isinstance(contents, list) and len(contents) == 1, "one content")
    parts = contents[0].get("parts") or []
    texts = [part["text"] for part in parts if "text" in part]
    _require(len(texts) == 1 and texts[0], "one text part")
    config = seen.body.get("generationConfig") or {}
    _require("IMAGE" in (config.get("responseModalities") or []), "ask for the IMAGE modality")
    ratio = (config.get("imageConfig") or {}).get("aspectRatio")
    _require(ratio in GEMINI, f"imageConfig.aspectRatio {ratio!r}")
    for part in parts:
        if "inlineData" in part:
            _png_size(base64.b64decode(part["inlineData"]["data"]), "inlineData")
    return GEMINI[ratio], texts[0]


def _gemini_answer(state: ProviderDouble, seen: Seen, size: tuple[int, int], refuse: bool):
    if refuse:
        feedback = {"blockReason": "PROHIBITED_CONTENT"}
        return 200, _json({"promptFeedback": feedback, "responseId": "resp-blocked"}), {}
    inline = {"mimeType": "image/png", "data": base64.b64encode(state.image(*size)).decode()}
    candidate = {
        "content": {"role": "model", "parts": [{"text": "Here it is."}, {"inlineData": inline}]},
        "finishReason": "STOP",
    }
    body = {"candidates": [candidate], "responseId": f"resp-{len(state.seen)}"}
    return 200, _json(body), {}


PROVIDERS = {
    "openai": (_openai_check, _openai_answer),
    "ideogram": (_ideogram_check, _ideogram_answer),
    "imagen": (_imagen_check, _imagen_answer),
    "gemini": (_gemini_check, _gemini_answer),
}
