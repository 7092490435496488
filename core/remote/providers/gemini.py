"""Gemini image models ("Nano Banana"): `POST /models/{model}:generateContent`.

- Auth: the ``x-goog-api-key`` header; base URL
  ``https://generativelanguage.googleapis.com/v1beta``.
- Body: ``{"contents": [{"role": "user", "parts": [{"text"}, {"inlineData":
  {"mimeType", "data"}}?]}], "generationConfig": {"responseModalities": ["TEXT",
  "IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize"?}, "seed"}}``.
  img2img sends the image as an inline part beside the prompt; there is no mask,
  so inpaint is refused (422) by the caller.
- Sizes: aspect ratios 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9 and 21:9 at
  about one megapixel (gemini-2.5-flash-image: 1024x1024, 1344x768, ...); later
  models also take ``imageSize`` 2K and 4K.
- Answer: ``{"candidates": [{"content": {"parts": [{"text"} | {"inlineData":
  {"mimeType", "data"}}]}, "finishReason"}], "promptFeedback"?, "responseId"}``.
  A refusal is a ``promptFeedback.blockReason``, a safety ``finishReason``, or a
  candidate with text and no image (the model's words are the reason).
"""

from __future__ import annotations

import base64
from typing import Any

from core.remote.wire import (
    HttpCall,
    HttpReply,
    Malformed,
    Mode,
    ProviderReply,
    Refused,
    RemoteCall,
    SizeOption,
    b64decode,
    error_message,
    json_body,
    png_bytes,
    reply_header,
)

NAME = "gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
SIZES_1K = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
            "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
            "16:9": (1344, 768), "21:9": (1536, 672)}  # fmt: skip
SAFETY_FINISH = frozenset(
    {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST",
     "SPII", "RECITATION", "IMAGE_RECITATION"}
)  # fmt: skip
MAX_SEED = 2**31 - 1


def capabilities(model: str) -> frozenset[str]:
    return frozenset({"txt2img", "img2img"})


def size_options(model: str, mode: Mode) -> list[SizeOption]:
    options = [SizeOption(label, w, h) for label, (w, h) in SIZES_1K.items()]
    if not model.startswith("gemini-2"):
        for tier, scale in (("2K", 2), ("4K", 4)):
            params = (("imageSize", tier),)
            options += [
                SizeOption(label, w * scale, h * scale, params)
                for label, (w, h) in SIZES_1K.items()
            ]
    return options


def ignored(call: RemoteCall) -> list[str]:
    names = ["steps", "guidance"]
    if call.negative_prompt:
        names.append("negative_prompt")
    if call.mode == "img2img":
        names.append("strength")
    return names


def build(call: RemoteCall, base_url: str, key: str) -> HttpCall:
    parts: list[dict[str, Any]] = [{"text": call.prompt}]
    if call.mode == "img2img":
        if call.image is None:
            raise ValueError("img2img needs an image")
        data = base64.b64encode(png_bytes(call.image)).decode()
        parts.append({"inlineData": {"mimeType": "image/png", "data": data}})
    image_config = {"aspectRatio": call.size.label, **dict(call.size.params)}
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config}
    if call.seed is not None:
        config["seed"] = call.seed % MAX_SEED
    body = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
    url = f"{base_url}/models/{call.model}:generateContent"
    return HttpCall("POST", url, {"x-goog-api-key": key}, json=body)


def parse(reply: HttpReply) -> ProviderReply:
    body = json_body(reply)
    if not isinstance(body, dict):
        raise Malformed("the answer is not a JSON object")
    feedback = body.get("promptFeedback") or {}
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        detail = feedback.get("blockReasonMessage") or ""
        raise Refused(f"prompt blocked: {feedback['blockReason']} {detail}".strip())
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        raise Malformed("the answer has no 'candidates'")
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    texts = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        inline = part.get("inlineData") or part.get("inline_data")  # REST or SDK spelling
        if isinstance(inline, dict):
            image = b64decode(inline.get("data"), "inlineData.data")
            request_id = body.get("responseId") or reply_header(reply, "x-request-id")
            return ProviderReply(image=image, request_id=request_id)
        if isinstance(part.get("text"), str):
            texts.append(part["text"].strip())
    finish = candidate.get("finishReason")
    if finish in SAFETY_FINISH or texts:
        raise Refused(" ".join(t for t in texts if t) or f"finishReason {finish}")
    raise Malformed(f"no image part in the answer (finishReason {finish})")


def refusal(reply: HttpReply) -> str | None:
    if reply.status != 400:
        return None
    message = error_message(reply)
    return message if "safety" in message.lower() or "blocked" in message.lower() else None
