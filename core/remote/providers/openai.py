"""OpenAI Images: `POST /images/generations` (JSON) and `POST /images/edits` (multipart).

- Auth: ``Authorization: Bearer <key>``; base URL ``https://api.openai.com/v1``.
- Generations: ``{"model", "prompt", "n": 1, "size": "1536x1024"}``; the DALL·E models
  are asked for ``"response_format": "b64_json"`` (GPT Image models always answer base64).
- Edits: form fields ``model, prompt, n, size`` with files ``image`` and, for inpaint,
  ``mask``, a PNG whose fully transparent pixels are the ones to repaint. GPT Image
  models edit without a mask too (our img2img); DALL·E 2 edits only with a mask and
  DALL·E 3 has no edit API.
- Answer: ``{"created", "data": [{"b64_json" | "url", "revised_prompt"?}]}``; the
  request id is the ``x-request-id`` header.
- A refusal is a 400 whose ``error.code`` is ``content_policy_violation`` (DALL·E) or
  ``moderation_blocked`` (GPT Image).
- Sizes: GPT Image 1024x1024, 1536x1024, 1024x1536; DALL·E 3 1024x1024, 1792x1024,
  1024x1792; DALL·E 2 squares of 256, 512 and 1024.
"""

from __future__ import annotations

import json

import numpy as np

from core.remote.wire import (
    HttpCall,
    HttpReply,
    Malformed,
    Mode,
    ProviderReply,
    RemoteCall,
    SizeOption,
    b64decode,
    json_body,
    png_bytes,
    reply_header,
)

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked"})

_GPT_IMAGE = ((1024, 1024), (1536, 1024), (1024, 1536))
_DALL_E_3 = ((1024, 1024), (1792, 1024), (1024, 1792))
_DALL_E_2 = ((256, 256), (512, 512), (1024, 1024))


def _family(model: str) -> str:
    return model if model in ("dall-e-2", "dall-e-3") else "gpt-image"


def capabilities(model: str) -> frozenset[str]:
    return {
        "dall-e-2": frozenset({"txt2img", "inpaint"}),
        "dall-e-3": frozenset({"txt2img"}),
        "gpt-image": frozenset({"txt2img", "img2img", "inpaint"}),
    }[_family(model)]


def size_options(model: str, mode: Mode) -> list[SizeOption]:
    sizes = {"dall-e-2": _DALL_E_2, "dall-e-3": _DALL_E_3, "gpt-image": _GPT_IMAGE}
    return [SizeOption(f"{w}x{h}", w, h) for w, h in sizes[_family(model)]]


def ignored(call: RemoteCall) -> list[str]:
    names = ["seed", "steps", "guidance"]
    if call.negative_prompt:
        names.append("negative_prompt")
    if call.mode == "img2img":
        names.append("strength")
    return names


def build(call: RemoteCall, base_url: str, key: str) -> HttpCall:
    headers = {"Authorization": f"Bearer {key}"}
    fields = {"model": call.model, "prompt": call.prompt, "n": 1, "size": call.size.label}
    if _family(call.model) != "gpt-image":
        fields["response_format"] = "b64_json"
    if call.mode == "txt2img":
        return HttpCall("POST", f"{base_url}/images/generations", headers, json=fields)
    if call.image is None:
        raise ValueError(f"{call.mode} needs an image")
    files = [("image", ("image.png", png_bytes(call.image), "image/png"))]
    if call.mode == "inpaint":
        if call.mask is None:
            raise ValueError("inpaint needs a mask")
        alpha = png_bytes(_alpha_mask(call.image, call.mask))
        files.append(("mask", ("mask.png", alpha, "image/png")))
    data = {name: str(value) for name, value in fields.items()}
    url = f"{base_url}/images/edits"
    return HttpCall("POST", url, headers, data=data, files=files, multipart=True)


def _alpha_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OpenAI's mask: the image with alpha 0 where it repaints (our mask's white)."""
    alpha = np.where(mask > 127, 0, 255).astype(np.uint8)
    return np.dstack([image, alpha])


def parse(reply: HttpReply) -> ProviderReply:
    body = json_body(reply)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise Malformed("the answer has no 'data' list of images")
    first = data[0]
    request_id = reply_header(reply, "x-request-id")
    revised = first.get("revised_prompt")
    if first.get("b64_json") is None and isinstance(first.get("url"), str):
        return ProviderReply(image_url=first["url"], request_id=request_id, revised_prompt=revised)
    image = b64decode(first.get("b64_json"), "data[0].b64_json")
    return ProviderReply(image=image, request_id=request_id, revised_prompt=revised)


def refusal(reply: HttpReply) -> str | None:
    try:
        error = json.loads(reply.body).get("error") or {}
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and error.get("code") in REFUSAL_CODES:
        return str(error.get("message") or error.get("code"))
    return None
