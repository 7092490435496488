"""Imagen through the Gemini API: `POST /models/{model}:predict`.

- Auth: the ``x-goog-api-key`` header; base URL
  ``https://generativelanguage.googleapis.com/v1beta``.
- Body: ``{"instances": [{"prompt"}], "parameters": {"sampleCount": 1, "aspectRatio":
  "16:9", "sampleImageSize": "2K"?, "includeRaiReason": true}}``. Aspect ratios 1:1,
  3:4, 4:3, 9:16 and 16:9 at 1K (1024x1024, 896x1280, 1280x896, 768x1408, 1408x768);
  the Standard and Ultra models also at 2K (twice each side), the Fast ones not.
- Answer: ``{"predictions": [{"bytesBase64Encoded", "mimeType"}]}``; an image the
  safety filter removed comes back as ``{"raiFilteredReason": ...}`` (or not at all),
  and a prompt the filter refuses as a 400 naming the Responsible AI practices.
- The Gemini API offers no edit API for Imagen and takes no seed or negative prompt:
  img2img and inpaint are refused (422) by the caller.
"""

from __future__ import annotations

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
    reply_header,
)

NAME = "imagen"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
SIZES_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
            "9:16": (768, 1408), "16:9": (1408, 768)}  # fmt: skip
REFUSAL_WORDS = ("responsible ai", "safety", "blocked", "violate")


def capabilities(model: str) -> frozenset[str]:
    return frozenset({"txt2img"})


def size_options(model: str, mode: Mode) -> list[SizeOption]:
    options = [SizeOption(label, w, h) for label, (w, h) in SIZES_1K.items()]
    if "fast" not in model:
        tier = (("sampleImageSize", "2K"),)
        options += [SizeOption(label, 2 * w, 2 * h, tier) for label, (w, h) in SIZES_1K.items()]
    return options


def ignored(call: RemoteCall) -> list[str]:
    names = ["seed", "steps", "guidance"]
    if call.negative_prompt:
        names.append("negative_prompt")
    return names


def build(call: RemoteCall, base_url: str, key: str) -> HttpCall:
    parameters: dict[str, object] = {
        "sampleCount": 1,
        "aspectRatio": call.size.label,
        "includeRaiReason": True,
        **dict(call.size.params),
    }
    body = {"instances": [{"prompt": call.prompt}], "parameters": parameters}
    url = f"{base_url}/models/{call.model}:predict"
    return HttpCall("POST", url, {"x-goog-api-key": key}, json=body)


def parse(reply: HttpReply) -> ProviderReply:
    body = json_body(reply)
    if not isinstance(body, dict):
        raise Malformed("the answer is not a JSON object")
    predictions = body.get("predictions") or []
    if not isinstance(predictions, list):
        raise Malformed("'predictions' is not a list")
    reasons = []
    for prediction in predictions:
        if isinstance(prediction, dict) and prediction.get("bytesBase64Encoded"):
            image = b64decode(prediction["bytesBase64Encoded"], "bytesBase64Encoded")
            request_id = reply_header(reply, "x-request-id", "x-goog-request-id")
            return ProviderReply(image=image, request_id=request_id)
        if isinstance(prediction, dict) and prediction.get("raiFilteredReason"):
            reasons.append(str(prediction["raiFilteredReason"]))
    raise Refused("; ".join(reasons) or "no image came back: the safety filter removed it")


def refusal(reply: HttpReply) -> str | None:
    if reply.status != 400:
        return None
    message = error_message(reply)
    return message if any(word in message.lower() for word in REFUSAL_WORDS) else None
