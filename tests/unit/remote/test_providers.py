"""Each adapter alone: the request it builds and how it reads answers (no network)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from core.remote.providers import gemini, ideogram, imagen, openai
from core.remote.wire import HttpReply, Malformed, Refused, RemoteCall, SizeOption, png_bytes

KEY = "sk-test-key"
IMAGE = np.full((64, 96, 3), 120, np.uint8)
MASK = np.zeros((64, 96), np.uint8)
MASK[16:48, 24:72] = 255
PNG = png_bytes(IMAGE)


def call(model: str, label: str = "1:1", mode: str = "txt2img", **fields) -> RemoteCall:
    size = SizeOption(label, 96, 64)
    image = IMAGE if mode != "txt2img" else None
    mask = MASK if mode == "inpaint" else None
    return RemoteCall(model, "a red kite", size, mode, image=image, mask=mask, **fields)


def reply(body, status: int = 200, **headers: str) -> HttpReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# -- OpenAI -------------------------------------------------------------------------------


def test_openai_generation_is_json_with_a_bearer_key():
    http = openai.build(call("dall-e-3", "1792x1024", seed=5), "https://api.openai.com/v1", KEY)
    assert (http.method, http.url) == ("POST", "https://api.openai.com/v1/images/generations")
    assert http.headers == {"Authorization": f"Bearer {KEY}"}
    assert http.json == {
        "model": "dall-e-3",
        "prompt": "a red kite",
        "n": 1,
        "size": "1792x1024",
        "response_format": "b64_json",
    }
    assert KEY not in repr(http)  # headers stay out of reprs and logs


def test_openai_gpt_image_is_not_asked_for_a_response_format():
    http = openai.build(call("gpt-image-1", "1536x1024"), "https://x/v1", KEY)
    assert "response_format" not in http.json


def test_openai_inpaint_sends_a_mask_transparent_where_it_repaints():
    http = openai.build(call("gpt-image-1", "1024x1024", "inpaint"), "https://x/v1", KEY)
    assert http.url == "https://x/v1/images/edits" and http.multipart
    assert http.data == {
        "model": "gpt-image-1",
        "prompt": "a red kite",
        "n": "1",
        "size": "1024x1024",
    }
    files = dict((name, content) for name, (_, content, _) in http.files)
    assert np.array_equal(decoded(files["image"]), IMAGE)
    alpha = decoded(files["mask"])[..., 3]
    assert alpha[20, 30] == 0 and alpha[0, 0] == 255


def test_openai_capabilities_follow_the_model():
    assert openai.capabilities("dall-e-3") == {"txt2img"}
    assert openai.capabilities("dall-e-2") == {"txt2img", "inpaint"}
    assert openai.capabilities("gpt-image-1") == {"txt2img", "img2img", "inpaint"}


def test_openai_answer_with_base64_revised_prompt_and_request_id():
    data = base64.b64encode(PNG).decode()
    body = {"created": 1, "data": [{"b64_json": data, "revised_prompt": "a RED kite"}]}
    parsed = openai.parse(reply(body, x_request_id="req_42"))
    assert parsed.image == PNG and parsed.revised_prompt == "a RED kite"
    assert parsed.request_id == "req_42"


@pytest.mark.parametrize("code", ["content_policy_violation", "moderation_blocked"])
def test_openai_policy_errors_are_refusals_with_the_provider_s_words(code):
    body = {"error": {"code": code, "message": "Rejected by our safety system."}}
    assert openai.refusal(reply(body, 400)) == "Rejected by our safety system."
    assert openai.refusal(reply({"error": {"code": "invalid_size", "message": "x"}}, 400)) is None


@pytest.mark.parametrize("body", [b"{not json", {"data": []}, {"data": [{"b64_json": "@@"}]}])
def test_openai_malformed_answers(body):
    with pytest.raises(Malformed):
        openai.parse(reply(body))


# -- Ideogram -----------------------------------------------------------------------------


def test_ideogram_legacy_generate_is_json_under_image_request():
    http = ideogram.build(call("V_2", "ASPECT_16_9", seed=2**40 + 3, negative_prompt="blur"),
                          "https://api.ideogram.ai", KEY)  # fmt: skip
    assert http.url == "https://api.ideogram.ai/generate" and http.headers == {"Api-Key": KEY}
    assert http.json == {
        "image_request": {
            "prompt": "a red kite",
            "model": "V_2",
            "seed": (2**40 + 3) % (2**31 - 1),
            "aspect_ratio": "ASPECT_16_9",
            "negative_prompt": "blur",
        }
    }


def test_ideogram_legacy_remix_carries_the_request_as_json_beside_the_file():
    http = ideogram.build(call("V_2", "ASPECT_1_1", "img2img", strength=0.3), "https://i", KEY)
    assert http.url == "https://i/remix" and http.multipart
    request = json.loads(http.data["image_request"])
    assert request["image_weight"] == 70 and request["aspect_ratio"] == "ASPECT_1_1"
    assert [name for name, _ in http.files] == ["image_file"]


def test_ideogram_edit_mask_is_black_where_it_repaints():
    http = ideogram.build(call("V_3", "1x1", "inpaint"), "https://i", KEY)
    assert http.url == "https://i/v1/ideogram-v3/edit"
    files = dict((name, content) for name, (_, content, _) in http.files)
    mask = decoded(files["mask"])
    assert mask[20, 30] == 0 and mask[0, 0] == 255


def test_ideogram_v3_generate_is_a_form_with_the_rendering_speed():
    http = ideogram.build(call("V_3_TURBO", "16x9", seed=9), "https://i", KEY)
    assert http.url == "https://i/v1/ideogram-v3/generate" and http.multipart and not http.files
    assert http.data == {
        "prompt": "a red kite",
        "rendering_speed": "TURBO",
        "seed": "9",
        "aspect_ratio": "16x9",
    }


def test_ideogram_edit_needs_a_v2_model_or_v3():
    assert "inpaint" not in ideogram.capabilities("V_1")
    assert "inpaint" in ideogram.capabilities("V_2") and "inpaint" in ideogram.capabilities("V_3")


def test_ideogram_answer_is_a_url_with_seed_and_magic_prompt():
    item = {"url": "https://img/1.png", "seed": 77, "prompt": "a red kite, poster",
            "resolution": "1312x736", "is_image_safe": True}  # fmt: skip
    parsed = ideogram.parse(reply({"created": "t", "data": [item]}))
    assert (parsed.image_url, parsed.seed, parsed.revised_prompt) == (
        "https://img/1.png", 77, "a red kite, poster"
    )  # fmt: skip


def test_ideogram_unsafe_images_and_safety_errors_are_refusals():
    with pytest.raises(Refused, match="safety"):
        ideogram.parse(reply({"data": [{"url": None, "is_image_safe": False}]}))
    body = {"error": "Prompt or provided image failed the safety checks"}
    assert ideogram.refusal(reply(body, 422)) == body["error"]
    assert ideogram.refusal(reply({"error": "Invalid input"}, 422)) is None


# -- Imagen and Gemini --------------------------------------------------------------------


def test_imagen_predict_body_and_key_header():
    size = SizeOption("16:9", 2816, 1536, (("sampleImageSize", "2K"),))
    remote = RemoteCall("imagen-4.0-generate-001", "a red kite", size)
    http = imagen.build(remote, "https://g/v1beta", KEY)
    assert http.url == "https://g/v1beta/models/imagen-4.0-generate-001:predict"
    assert http.headers == {"x-goog-api-key": KEY}
    assert http.json == {
        "instances": [{"prompt": "a red kite"}],
        "parameters": {"sampleCount": 1, "aspectRatio": "16:9", "includeRaiReason": True,
                       "sampleImageSize": "2K"},
    }  # fmt: skip
    assert imagen.capabilities("imagen-4.0-generate-001") == {"txt2img"}


def test_imagen_answers_images_or_the_filter_s_reason():
    data = base64.b64encode(PNG).decode()
    assert imagen.parse(reply({"predictions": [{"bytesBase64Encoded": data}]})).image == PNG
    with pytest.raises(Refused, match="filtered out"):
        imagen.parse(reply({"predictions": [{"raiFilteredReason": "filtered out (code 1)"}]}))
    with pytest.raises(Refused, match="safety filter"):
        imagen.parse(reply({}))
    body = {"error": {"code": 400, "message": "violates Google's Responsible AI practices"}}
    assert "Responsible AI" in imagen.refusal(reply(body, 400))


def test_gemini_generate_content_with_an_image_part_for_img2img():
    http = gemini.build(call("gemini-2.5-flash-image", "3:2", "img2img", seed=4), "https://g", KEY)
    assert http.url == "https://g/models/gemini-2.5-flash-image:generateContent"
    (content,) = http.json["contents"]
    text, inline = content["parts"]
    assert text == {"text": "a red kite"}
    assert decoded(base64.b64decode(inline["inlineData"]["data"])).shape == IMAGE.shape
    assert http.json["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "3:2"},
        "seed": 4,
    }
    assert gemini.capabilities("gemini-2.5-flash-image") == {"txt2img", "img2img"}


def test_gemini_answers_the_inline_image_or_a_refusal():
    data = base64.b64encode(PNG).decode()
    parts = [{"text": "Sure"}, {"inlineData": {"mimeType": "image/png", "data": data}}]
    body = {"candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}],
            "responseId": "abc"}  # fmt: skip
    parsed = gemini.parse(reply(body))
    assert parsed.image == PNG and parsed.request_id == "abc"
    with pytest.raises(Refused, match="PROHIBITED_CONTENT"):
        gemini.parse(reply({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))
    with pytest.raises(Refused, match="I can't draw that"):
        text_only = {"content": {"parts": [{"text": "I can't draw that."}]}, "finishReason": "STOP"}
        gemini.parse(reply({"candidates": [text_only]}))
    with pytest.raises(Refused, match="IMAGE_SAFETY"):
        gemini.parse(reply({"candidates": [{"content": {}, "finishReason": "IMAGE_SAFETY"}]}))
    with pytest.raises(Malformed):
        gemini.parse(reply({"candidates": []}))
