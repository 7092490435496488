"""Large JSON bodies parsed in short steps give exactly what `json.loads` gives."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve.json_body import LARGE_BODY, gather_body, parse_json_body

BIG = "A" * (LARGE_BODY + 7)


@pytest.mark.parametrize(
    "document",
    [
        {"prompt": "a cat", "init_image": BIG, "mask": BIG.lower(), "steps": 4},
        {"items": [BIG, {"nested": [BIG, "x"]}, 1.5, None, True], "k": 'say "hi" \\ there'},
        {"escaped_big": BIG + '"quoted" \\ back', "plain": BIG},  # escapes: parsed whole
        {"unicode": "é" * (LARGE_BODY // 2 + 3), "emoji": "🎨" + BIG},
        {"looks_like_a_token": "\u0000deadbeef-0", "big": BIG},
        [BIG, BIG, "small"],
    ],
)
def test_the_same_as_json_loads(document):
    body = json.dumps(document, ensure_ascii=False).encode()
    assert len(body) > LARGE_BODY
    assert parse_json_body(body) == json.loads(body) == document
    assert parse_json_body(bytearray(body)) == document


def test_small_bodies_and_bad_json():
    assert parse_json_body(b'{"a": [1, "b"]}') == {"a": [1, "b"]}
    for bad in [b'{"a": "' + BIG.encode(), b'{"a": "' + BIG.encode() + b'" "b"}', b"[" * 10]:
        with pytest.raises(ValueError):
            parse_json_body(bad)


def test_a_key_longer_than_a_mib_is_refused_rather_than_mangled():
    with pytest.raises(ValueError, match="a key longer than a MiB"):
        parse_json_body(json.dumps({BIG: 1}).encode())


def test_chunks_are_gathered_in_order():
    async def chunks():
        for part in (b"ab", b"", b"cde"):
            yield part

    assert asyncio.run(gather_body(chunks())) == bytearray(b"abcde")
