"""Ideogram: the JSON `/generate` API (V_1, V_2, V_2A) and the V3 form API.

- Auth: the ``Api-Key`` header; base URL ``https://api.ideogram.ai``.
- Legacy models: ``POST /generate`` with ``{"image_request": {"prompt", "model",
  "aspect_ratio": "ASPECT_16_9", "seed", "negative_prompt"}}``; img2img is
  ``POST /remix`` and inpaint ``POST /edit`` (multipart; remix carries the
  ``image_request`` as a JSON string beside ``image_file``).
- V3 (model ``V_3``, ``V_3_TURBO`` or ``V_3_QUALITY``: the suffix is the rendering
  speed): multipart forms to ``/v1/ideogram-v3/generate``, ``/remix`` and ``/edit``
  with ``prompt, aspect_ratio ("16x9"), seed, negative_prompt, rendering_speed``.
- Edits take ``mask``, a black-and-white image whose black pixels are repainted (the
  inverse of our mask); remix takes ``image_weight`` (1-100; from our strength).
- Answer: ``{"created", "data": [{"url", "seed", "prompt", "resolution",
  "is_image_safe"}]}``: the image is a URL to download. ``is_image_safe: false`` is a
  refusal, and so is an error answer whose message names the safety check (422).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.remote.sizes import ratio_options
from core.remote.wire import (
    HttpCall,
    HttpReply,
    Malformed,
    Mode,
    ProviderReply,
    Refused,
    RemoteCall,
    SizeOption,
    error_message,
    json_body,
    png_bytes,
    reply_header,
)

NAME = "ideogram"
DEFAULT_BASE_URL = "https://api.ideogram.ai"
MAX_SEED = 2**31 - 1
LEGACY_RATIOS = ("1_1", "10_16", "16_10", "9_16", "16_9", "3_2", "2_3", "4_3", "3_4", "1_3", "3_1")
V3_RATIOS = (
    "1x1", "1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10",
    "2x3", "3x2", "3x4", "4x3", "4x5", "5x4",
)  # fmt: skip
EDIT_MODELS = frozenset({"V_2", "V_2_TURBO"})  # the legacy /edit endpoint's models
_AREA = 1024 * 1024


def _v3(model: str) -> bool:
    return model.startswith("V_3")


def capabilities(model: str) -> frozenset[str]:
    if _v3(model) or model in EDIT_MODELS:
        return frozenset({"txt2img", "img2img", "inpaint"})
    return frozenset({"txt2img", "img2img"})


def size_options(model: str, mode: Mode) -> list[SizeOption]:
    if _v3(model):
        return ratio_options(V3_RATIOS, _AREA, separator="x")
    options = ratio_options([r.replace("_", ":") for r in LEGACY_RATIOS], _AREA)
    return [
        SizeOption("ASPECT_" + o.label.replace(":", "_"), o.width, o.height, ratio=o.ratio)
        for o in options
    ]


def ignored(call: RemoteCall) -> list[str]:
    names = ["steps", "guidance"]
    if call.mode == "inpaint":
        names.append("strength")
    return names


def _speed(model: str) -> str:
    suffix = model.removeprefix("V_3").lstrip("_")
    return suffix if suffix in ("TURBO", "QUALITY") else "DEFAULT"


def _image_weight(strength: float) -> int:
    """Remix weight of the source image (1-100): the less strength, the more weight."""
    return int(min(max(round((1 - strength) * 100), 1), 100))


def _files(call: RemoteCall, image_field: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    if call.image is None:
        raise ValueError(f"{call.mode} needs an image")
    files = [(image_field, ("image.png", png_bytes(call.image), "image/png"))]
    if call.mode == "inpaint":
        if call.mask is None:
            raise ValueError("inpaint needs a mask")
        black_repaints = np.where(call.mask > 127, 0, 255).astype(np.uint8)
        files.append(("mask", ("mask.png", png_bytes(black_repaints), "image/png")))
    return files


def build(call: RemoteCall, base_url: str, key: str) -> HttpCall:
    headers = {"Api-Key": key}
    return (_build_v3 if _v3(call.model) else _build_legacy)(call, base_url, headers)


def _build_v3(call: RemoteCall, base_url: str, headers: dict[str, str]) -> HttpCall:
    form: dict[str, str] = {"prompt": call.prompt, "rendering_speed": _speed(call.model)}
    if call.seed is not None:
        form["seed"] = str(call.seed % MAX_SEED)
    if call.mode != "inpaint":
        form["aspect_ratio"] = call.size.label
        if call.negative_prompt:
            form["negative_prompt"] = call.negative_prompt
    endpoint = {"txt2img": "generate", "img2img": "remix", "inpaint": "edit"}[call.mode]
    if call.mode == "img2img":
        form["image_weight"] = str(_image_weight(call.strength))
    files = [] if call.mode == "txt2img" else _files(call, "image")
    url = f"{base_url}/v1/ideogram-v3/{endpoint}"  # a multipart form, even to generate
    return HttpCall("POST", url, headers, data=form, files=files, multipart=True)


def _build_legacy(call: RemoteCall, base_url: str, headers: dict[str, str]) -> HttpCall:
    request: dict[str, Any] = {"prompt": call.prompt, "model": call.model}
    if call.seed is not None:
        request["seed"] = call.seed % MAX_SEED
    if call.mode == "inpaint":
        form = {name: str(value) for name, value in request.items()}
        files = _files(call, "image_file")
        return HttpCall("POST", f"{base_url}/edit", headers, data=form, files=files, multipart=True)
    request["aspect_ratio"] = call.size.label
    if call.negative_prompt:
        request["negative_prompt"] = call.negative_prompt
    if call.mode == "txt2img":
        return HttpCall("POST", f"{base_url}/generate", headers, json={"image_request": request})
    request["image_weight"] = _image_weight(call.strength)
    form = {"image_request": json.dumps(request)}
    files = _files(call, "image_file")
    return HttpCall("POST", f"{base_url}/remix", headers, data=form, files=files, multipart=True)


def parse(reply: HttpReply) -> ProviderReply:
    body = json_body(reply)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise Malformed("the answer has no 'data' list of images")
    first = data[0]
    if first.get("is_image_safe") is False:
        raise Refused("the image failed Ideogram's safety check (is_image_safe: false)")
    url = first.get("url")
    if not isinstance(url, str) or not url:
        raise Malformed("data[0].url is missing")
    seed = first.get("seed")
    return ProviderReply(
        image_url=url,
        request_id=reply_header(reply, "x-request-id", "request-id"),
        seed=seed if isinstance(seed, int) else None,
        revised_prompt=first.get("prompt") if isinstance(first.get("prompt"), str) else None,
    )


def refusal(reply: HttpReply) -> str | None:
    if reply.status not in (400, 422):
        return None
    message = error_message(reply)
    return message if "safety" in message.lower() else None
