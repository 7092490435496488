import pytest

from cli.text_boxes import read_text_boxes
from core.errors import RequestError


def test_boxes_are_read_from_yaml_or_json(tmp_path):
    yaml_file = tmp_path / "boxes.yaml"
    yaml_file.write_text("- copy: 'SALE $19.99'\n  anchor: {x: 0.1, y: 0.6, w: 0.8}\n")
    json_file = tmp_path / "boxes.json"
    json_file.write_text('[{"copy": "SALE $19.99", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8}}]')
    assert read_text_boxes(yaml_file) == read_text_boxes(json_file)
    assert read_text_boxes(json_file)[0]["copy"] == "SALE $19.99"
    assert read_text_boxes(None) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("copy: [unclosed", "is not YAML or JSON"), ("copy: SALE", "must hold a list of text boxes")],
)
def test_a_bad_file_is_one_readable_error(tmp_path, text, fragment):
    path = tmp_path / "boxes.yaml"
    path.write_text(text)
    with pytest.raises(RequestError) as caught:
        read_text_boxes(path)
    assert caught.value.field == "text-boxes" and fragment in caught.value.message
