"""Class names as training scripts and model hubs leave them: a text file, a JSON list, an id2label object
(alone or in a Hugging Face config.json), or the model card; CRLF and BOM text files read the same."""

from __future__ import annotations

import json

import pytest

from edgeresnet.errors import InputError
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.models.description import read_card, read_class_names

NAMES = ("ant", "bee", "cat")


@pytest.mark.parametrize("name, text", [
    ("classes.txt", "ant\nbee\ncat\n"),
    ("windows.txt", "\ufeffant\r\nbee\r\ncat\r\n"),
    ("classes.json", json.dumps(list(NAMES))),
    ("id2label.json", json.dumps({"2": "cat", "0": "ant", "1": "bee"})),
    ("config.json", json.dumps({"architectures": ["ResNetForImageClassification"], "id2label": {"0": "ant", "1": "bee", "2": "cat"}})),
])
def test_class_name_files(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert read_class_names(tmp_path / name) == NAMES


@pytest.mark.parametrize("text, message", [
    (json.dumps({"0": "ant", "2": "cat"}), "every index 0..1"),
    (json.dumps({"zero": "ant"}), "map class indices"),
    (json.dumps([1, 2]), "non-empty list of names"),
    ("[not json", "not a JSON list"),
])
def test_bad_class_name_files_say_why(tmp_path, text, message):
    (tmp_path / "names.json").write_text(text)
    with pytest.raises(InputError, match=message):
        read_class_names(tmp_path / "names.json")


def test_json_list_through_the_option_names_the_head(tmp_path):
    (tmp_path / "classes.json").write_text(json.dumps([f"k{i}" for i in range(10)]))
    loaded = load_model("resnet20", None, ModelDescription(class_names_file=str(tmp_path / "classes.json")))
    assert loaded.preprocessing.class_names == tuple(f"k{i}" for i in range(10))
    assert loaded.sources["class_names"] == f"command-line option ({tmp_path / 'classes.json'})"


def test_card_takes_an_id2label_object_and_a_json_names_file(tmp_path):
    card = tmp_path / "card.json"
    card.write_text("\ufeff" + json.dumps({"class_names": {"1": "bee", "0": "ant", "2": "cat"}}), encoding="utf-8")
    assert read_card(card).class_names == NAMES
    (tmp_path / "names.json").write_text(json.dumps(list(NAMES)))
    card.write_text(json.dumps({"class_names_file": "names.json"}))
    assert read_card(card).class_names_file == str(tmp_path / "names.json")
    loaded = load_model("resnet20", None, ModelDescription(card=str(card), num_classes=3))
    assert loaded.preprocessing.class_names == NAMES


@pytest.mark.parametrize("card, message", [
    ('{"mean": [NaN, 0, 0]}', "finite"),
    ('{"std": [1e999, 1, 1]}', "finite"),
    ('{"pixel_scale": Infinity}', "finite"),
    ('{"antialias": "yes"}', "true or false"),
    ('{"interpolation": "cubic"}', "interpolation must be one of"),
])
def test_card_values_that_are_no_numbers_are_refused(tmp_path, card, message):
    (tmp_path / "card.json").write_text(card)
    with pytest.raises(InputError, match=message):
        load_model("resnet20", None, ModelDescription(card=str(tmp_path / "card.json")))
