"""Expansion: items x sizes x variants -> jobs with stable keys; checked against the config."""

from __future__ import annotations

import re

import pytest

from core.campaign import ManifestError, derive_seed, expand_manifest, parse_manifest
from core.schemas import RenderRequestBody

from .conftest import twelve_item_yaml


def test_twelve_items_at_two_sizes_give_24_jobs_in_manifest_order(jobs, manifest):
    assert len(jobs) == 24
    assert all(re.fullmatch(r"[0-9a-f]{32}", job.key) for job in jobs)
    assert len({job.key for job in jobs}) == 24
    assert [(job.item_index, job.size) for job in jobs[:4]] == [
        (0, "1:1"),
        (0, "16:9"),
        (1, "1:1"),
        (1, "16:9"),
    ]
    assert [job.item_id for job in jobs[::2]] == [item.id for item in manifest.items]
    hero = jobs[1]
    assert (hero.width, hero.height, hero.model, hero.large) == (344, 192, "quality", False)
    assert hero.copy_text == "Spring sale: 50% off"
    assert hero.request == {
        "prompt": "a red bicycle on a beach",
        "style": "photo",
        "steps": 4,
        "width": 344,
        "height": 192,
        "seed": hero.seed,
        "format": "png",
    }
    for job in jobs:
        body = RenderRequestBody(**job.request)
        assert (body.width, body.height, body.seed) == (job.width, job.height, job.seed)


def test_re_expanding_gives_identical_keys_and_an_edit_changes_only_that_items(config, jobs):
    again = expand_manifest(parse_manifest(twelve_item_yaml(), "yaml"), config)
    assert [job.key for job in again] == [job.key for job in jobs]

    edited_text = twelve_item_yaml().replace("50% off", "60% off").replace("a black cat", "a cat")
    edited = expand_manifest(parse_manifest(edited_text, "yaml"), config)
    changed = {job.item_index for job, new in zip(jobs, edited, strict=True) if job.key != new.key}
    assert changed == {0, 9}  # the hero's copy text, the black cat's prompt (and derived id)
    assert {job.key for job in edited} - {job.key for job in jobs} == {
        new.key for new in edited if new.item_index in changed
    }

    renamed = expand_manifest(parse_manifest(twelve_item_yaml("autumn"), "yaml"), config)
    assert not {job.key for job in renamed} & {job.key for job in jobs}


def test_reordering_items_keeps_every_key(config, jobs):
    lines = twelve_item_yaml().splitlines()
    head, hero, rest = lines[:6], lines[6:9], lines[9:]
    reordered = "\n".join(head + rest[::-1] + hero) + "\n"
    keys = {job.key for job in expand_manifest(parse_manifest(reordered, "yaml"), config)}
    assert keys == {job.key for job in jobs}


def test_seeds_are_explicit_or_derived_per_variant_and_shared_across_sizes(config):
    manifest = parse_manifest(
        """
campaign: seeds
defaults: {sizes: [1:1, 2:3]}
items:
  - {id: a, prompt: a fox, seeds: [7, 99]}
  - {id: b, prompt: a hen, variants: 3}
""",
        "yaml",
    )
    jobs = expand_manifest(manifest, config)
    assert [(j.item_id, j.size, j.variant, j.seed) for j in jobs[:4]] == [
        ("a", "1:1", 0, 7),
        ("a", "1:1", 1, 99),
        ("a", "2:3", 0, 7),
        ("a", "2:3", 1, 99),
    ]
    derived = [derive_seed("seeds", "b", variant) for variant in range(3)]
    assert len(set(derived)) == 3 and all(0 <= seed < 2**32 for seed in derived)
    assert [j.seed for j in jobs[4:]] == derived * 2
    assert [j.variant for j in jobs[4:]] == [0, 1, 2] * 2


def test_routes_pipelines_and_large_formats(config):
    manifest = parse_manifest(
        """
campaign: routes
defaults: {pipeline: hires}
items:
  - {id: board, prompt: a billboard, sizes: [2048x512, 4:1]}
  - {id: poster, prompt: a poster, style: poster, sizes: [1:1], negative_prompt: text}
""",
        "yaml",
    )
    board_a, board_b, poster = expand_manifest(manifest, config, pipelines={"hires": "wide"})
    assert board_a.pipeline == "hires" and board_a.model == "wide"
    assert "style" not in board_a.request and "model" not in board_a.request
    assert (board_a.width, board_a.height, board_a.large) == (2048, 512, True)
    assert (board_b.width, board_b.height, board_b.large) == (1024, 256, False)  # base 512
    assert poster.request["style"] == "poster" and poster.pipeline is None
    assert poster.request["negative_prompt"] == "text"
    assert (poster.width, poster.height) == (512, 512)


def test_everything_the_config_cannot_render_is_named_before_any_job(config):
    manifest = parse_manifest(
        """
campaign: bad
defaults: {style: neon, steps: 80}
items:
  - {id: a, prompt: a fox}
  - {id: b, prompt: a hen, model: quality, sizes: [250x250, 1:1, 256x256, 1000x750]}
  - {id: c, prompt: a cow, pipeline: upscale}
  - {id: d, prompt: a pig, model: wide, steps: 10, sizes: [512x520]}
""",
        "yaml",
    )
    with pytest.raises(ManifestError) as caught:  # 1000x750 is large: any size goes
        expand_manifest(manifest, config, pipelines={"hires": "wide"})
    assert caught.value.problems == [
        "defaults.style: style 'neon' is not one of ['photo', 'poster']",
        "defaults.steps: 80 is over the limit of 50",
        "items[1].sizes[0]: 250x250: width 250 is not a multiple of 8 (the latent factor "
        "of model 'quality'); nearest are 248 and 256",
        "items[1].sizes[0]: 250x250: height 250 is not a multiple of 8 (the latent factor "
        "of model 'quality'); nearest are 248 and 256",
        "items[1].sizes[2]: renders the same image as items[1].sizes[1] (256x256, seed "
        f"{derive_seed('bad', 'b', 0)})",
        "items[2].pipeline: 'upscale' is not one of the pipelines (hires)",
        "items[3].sizes[0]: 512x520: height 520 is not a multiple of 16 (the latent factor "
        "of model 'wide'); nearest are 512 and 528",
    ]
