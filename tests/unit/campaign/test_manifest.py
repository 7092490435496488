"""Manifests: three formats, one meaning; stable item ids; every problem named up front."""

from __future__ import annotations

import pickle

import pytest

from core.campaign import Manifest, ManifestError, load_manifest, manifest_from_data, parse_manifest

from .conftest import twelve_item_yaml

YAML = """
campaign: spring-sale
defaults:
  style: photo
  sizes: [1:1, 4:5]        # unquoted ratios must stay text, not YAML base-60 numbers
  negative_prompt: blurry
items:
  - id: hero
    prompt: a red bicycle, studio light
    sizes: [16:9, 1920x1080]
    seeds: [1, 2]
    copy: "Sale: 50% off, today only"
  - prompt: a blue kite
    variants: 3
    steps: 20
    guidance: 6.5
  - prompt: a poster of a lighthouse
    model: wide
    negative_prompt: ""
"""

JSONL = """\
{"campaign": "spring-sale", "defaults": {"style": "photo", "sizes": ["1:1", "4:5"], \
"negative_prompt": "blurry"}}
{"id": "hero", "prompt": "a red bicycle, studio light", "sizes": ["16:9", "1920x1080"], \
"seeds": [1, 2], "copy": "Sale: 50% off, today only"}

{"prompt": "a blue kite", "variants": 3, "steps": 20, "guidance": 6.5}
{"prompt": "a poster of a lighthouse", "model": "wide", "negative_prompt": ""}
"""

CSV = """\
# campaign: spring-sale
# defaults: {style: photo, sizes: [1:1, 4:5], negative_prompt: blurry}
id,prompt,sizes,seeds,variants,steps,guidance,model,negative_prompt,copy
hero,"a red bicycle, studio light",16:9;1920x1080,1;2,,,,,,"Sale: 50% off, today only"
,a blue kite,,,3,20,6.5,,,
,a poster of a lighthouse,,,,,,wide,,
"""


def test_yaml_jsonl_and_csv_give_the_same_manifest():
    from_yaml = parse_manifest(YAML, "yaml")
    assert from_yaml.defaults.sizes == ["1:1", "4:5"]
    assert from_yaml.items[0].copy_text == "Sale: 50% off, today only"
    assert from_yaml.items[0].seeds == [1, 2]
    assert parse_manifest(JSONL, "jsonl") == from_yaml
    # An empty CSV cell means "unset": the third item inherits the default negative prompt.
    from_csv = parse_manifest(CSV, "csv")
    assert from_csv.items[2].negative_prompt is None
    assert from_yaml.items[2].negative_prompt == ""
    assert from_csv.model_dump(exclude={"items": {2: {"id", "negative_prompt"}}}) == (
        from_yaml.model_dump(exclude={"items": {2: {"id", "negative_prompt"}}})
    )


def test_files_are_read_by_suffix(tmp_path):
    for name, text in (("m.yaml", YAML), ("m.jsonl", JSONL), ("m.csv", CSV)):
        (tmp_path / name).write_text(text)
        assert load_manifest(tmp_path / name).items[0].id == "hero"
    with pytest.raises(ManifestError, match="unknown manifest suffix '.txt'"):
        load_manifest(tmp_path / "m.txt")


def test_item_ids_are_derived_from_content_and_stable():
    manifest = parse_manifest(YAML, "yaml")
    kite = manifest.items[1]
    assert kite.id is not None and kite.id.startswith("a-blue-kite-")
    reordered = YAML.replace("  - prompt: a blue kite", "  - prompt: a blue  kite ")
    assert parse_manifest(reordered, "yaml").items[1].id != kite.id  # content changed
    again = parse_manifest(YAML, "yaml")
    assert [item.id for item in again.items] == [item.id for item in manifest.items]
    assert parse_manifest(JSONL, "jsonl").items[1].id == kite.id


def test_a_manifest_with_several_errors_names_each_item_and_field():
    bad = """
campaign: Spring Sale
defaults:
  sizes: [1:1]
  colour: red
items:
  - id: hero
    prompt: a red bicycle
    sizes: [16:9, 7:0]
  - prompt: ""
    steps: 5000
  - id: hero
    prompt: another hero
  - prompt: two routes
    style: photo
    model: wide
  - prompt: both
    seeds: [1]
    variants: 2
"""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(bad, "yaml", source="bad.yaml")
    problems = caught.value.problems
    expected = [
        "line 2: campaign: 'Spring Sale' must be 1-63 lowercase letters",
        "line 5: defaults.colour: unknown field",
        "line 9: items[0].sizes[1]: '7:0' is not a size or aspect ratio",
        "line 10: items[1].prompt: String should have at least 1 character",
        "line 11: items[1].steps: Input should be less than or equal to 1000 (got 5000)",
        "line 14: items[3]: give one of style, model or pipeline, not style and model",
        "line 17: items[4]: give seeds or variants, not both",
        "line 12: items[2].id: 'hero' is already the id of items[0]",
    ]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)
    assert "bad.yaml has 8 problem(s)" in str(caught.value)


def test_csv_and_jsonl_errors_are_named_by_line():
    bad_csv = """\
# campaign: spring-sale
id,prompt,sizes,colour
a,first,1:1;7:0,
b,,16:9,
a,third,1:1,
c,fourth,1:1,1:1,extra
"""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(bad_csv, "csv")
    assert caught.value.problems == [
        "line 2: unknown column 'colour' (columns: copy, copy_mode, guidance, id, model, "
        "negative_prompt, pipeline, prompt, seeds, sizes, steps, style, variants)",
        "line 6: 5 cells but the column row has 4",
        "line 3: sizes[1]: '7:0' is not a size or aspect ratio (like 1:1, 16:9 or 1920x1080)",
        "line 4: prompt: Field required",
        "line 5: id: 'a' is already the id of line 3",
    ]
    bad_jsonl = '{"campaign": "x"}\n{"prompt": "a", "seeds": "1;-2"}\n{oops\n[1, 2]\n'
    with pytest.raises(ManifestError) as caught:
        parse_manifest(bad_jsonl, "jsonl")
    assert caught.value.problems == [
        "line 3: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 2: seeds[1]: Input should be greater than or equal to 0 (got '-2')",
        "line 4: an item must be a mapping of fields, got list",
    ]


def test_a_missing_campaign_name_says_where_each_format_puts_it():
    with pytest.raises(ManifestError, match="'# campaign: spring-sale' before the column row"):
        parse_manifest("prompt\na cat\n", "csv")
    with pytest.raises(ManifestError, match='a first line like {"campaign"'):
        parse_manifest('{"prompt": "a cat"}\n', "jsonl")
    with pytest.raises(ManifestError, match="items: the manifest has no items"):
        parse_manifest("campaign: empty\nitems: []\n", "yaml")


def test_an_api_body_is_validated_by_path_and_the_error_survives_pickling():
    data = {"campaign": "c", "items": [{"prompt": "ok"}, {"prompt": "x", "sizes": ["1:1", "1:1"]}]}
    with pytest.raises(ManifestError) as caught:
        manifest_from_data(data)
    assert caught.value.problems == ["items[1].sizes: 1:1 given more than once"]
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.problems == caught.value.problems and str(copy) == str(caught.value)
    with pytest.raises(ManifestError) as caught:
        manifest_from_data({"campaign": "c", "items": {"prompt": "not a list"}})
    assert caught.value.problems == ["items: must be a list of items, got dict"]


def test_the_twelve_item_fixture_manifest_loads():
    manifest = parse_manifest(twelve_item_yaml(), "yaml")
    assert isinstance(manifest, Manifest) and len(manifest.items) == 12
    assert len({item.id for item in manifest.items}) == 12
