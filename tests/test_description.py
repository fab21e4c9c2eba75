"""Model cards as users write them (edgeresnet/models/description.py): every key's bad values are refused in one
line naming the card, null says nothing, and cards saved by other systems' editors read the same."""

from __future__ import annotations

import json

import pytest

from edgeresnet.errors import InputError
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.models.description import read_card

BAD_VALUES = {
    "num_classes": ["10", 10.5, -1, 0, 1e9, True, [10], "1e400"],
    "input_size": [[0, 0], [-1], "32", [32, 32, 32], [1e9], {"h": 32}, [], [32.5, 32], True, "1e400"],
    "channels": [2, "3", 0, -1, 3.5, True],
    "mean": ["0.5", [], ["x", 0, 0], "[1e400, 0, 0]", [[0.5], [0.5], [0.5]], {"r": 0}, True],
    "std": [[0, 0, 0], [-1, 1, 1], "1", [], "[1e400, 1, 1]", [1e-300] * 3],
    "pixel_scale": [0, -1, "255", "1e400", True, [255], 1e30, 1e-30],
    "resize": [-1, "256", 10.5, True, [256], "1e400", 5, 10**9],
    "channel_order": [3, "RGBA", ["RGB"], ""],
    "interpolation": [5, "cubic", ""],
    "antialias": ["false", 0, "yes"],
    "class_names": ["abc", [1, 2], [], {"a": "x"}, {"0": "a", "2": "b"}, [""] * 10, [["a"]] * 10, {"0": 5}],
    "class_names_file": [5, "missing.txt", ["a.txt"], ""],
    "weights_key": [5, []],
    "preset": [5, "coco", "", ["unit"]],
}
CASES = [(key, value) for key, values in BAD_VALUES.items() for value in values]


def _card(tmp_path, key, value) -> str:
    # A string "1e400" stands for the JSON number 1e400, which Python's json reads as infinity.
    text = json.dumps({key: value}).replace('"1e400"', "1e400")
    (tmp_path / "card.json").write_text(text)
    return str(tmp_path / "card.json")


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}"[:40] for k, v in CASES])
def test_every_bad_value_of_every_key_is_refused_in_one_line(tmp_path, key, value):
    card = _card(tmp_path, key, value)
    with pytest.raises(InputError) as err:
        load_model("resnet20", None, ModelDescription(card=card))
    message = str(err.value)
    assert "\n" not in message
    # Named by the card, or by the preprocessing the card's values would make (checked once they are combined).
    assert message.startswith((str(tmp_path), "preprocessing: ")), message


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_null_says_nothing(tmp_path, key):
    card = read_card(_card(tmp_path, key, None))
    assert card.given == {}


@pytest.mark.parametrize("text, message", [
    ('{"num_classes": ' + "9" * 5000 + "}", "not a valid JSON"),  # past Python's integer digit limit
    ("[" * 100_000 + "]" * 100_000, "not a valid JSON"),  # deeper than the parser's recursion
    ('{"preset": "cifar",}', "no comments or trailing commas"),
    ('// my card\n{"preset": "cifar"}', "no comments or trailing commas"),
    ("", "not a valid JSON"),
    ("[1, 2]", "a model card is a table"),
])
def test_text_that_is_no_card_is_refused(tmp_path, text, message):
    (tmp_path / "card.json").write_text(text)
    with pytest.raises(InputError, match=message):
        read_card(tmp_path / "card.json")


def test_a_folder_is_no_card(tmp_path):
    with pytest.raises(InputError, match="a folder, not a model card"):
        read_card(tmp_path)


@pytest.mark.parametrize("name, data", [
    ("bom.json", '\ufeff{"preset": "cifar", "channel_order": "bgr"}'.encode()),
    ("windows.json", '{\r\n  "preset": "cifar",\r\n  "channel_order": "BGR"\r\n}\r\n'.encode()),
    ("old-mac.json", '{\r"preset": "cifar",\r"channel_order": " Bgr "\r}'.encode()),
    ("utf16.json", '{"preset": "cifar", "channel_order": "BGR"}'.encode("utf-16")),
    ("utf16.toml", "preset = 'cifar'\r\nchannel_order = 'BGR'\r\n".encode("utf-16")),
    ("bom.toml", "\ufeffpreset = 'cifar' # a comment\nchannel_order = 'bgr'\n".encode()),
])
def test_cards_from_other_systems_read_the_same(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    card = read_card(tmp_path / name)
    assert (card.preset, card.channel_order) == ("cifar", "BGR")
