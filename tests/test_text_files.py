"""Small text files as other systems write them: byte-order marks, UTF-16/32, CRLF and CR line ends."""

from __future__ import annotations

import pytest

from edgeresnet.errors import InputError
from edgeresnet.text_files import read_text

TEXT = "preset = 'cifar'\nclass = 'café'\n"


@pytest.mark.parametrize("encoding, line_end", [
    ("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-16", "\r\n"), ("utf-16-be", "\n"), ("utf-32", "\n"), ("utf-8", "\r"),
])
def test_unicode_files_read_the_same(tmp_path, encoding, line_end):
    data = TEXT.replace("\n", line_end).encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # big-endian with its mark, as some Mac tools write it
    (tmp_path / "card.toml").write_bytes(data)
    assert read_text(tmp_path / "card.toml", "model card") == TEXT


@pytest.mark.parametrize("data, message", [
    (TEXT.encode("cp1252"), "not UTF-8 text"),
    (TEXT.encode("utf-16-le"), "not UTF-8 text"),  # UTF-16 without its mark is not guessed
    ("preset = 'cifar'\n".encode("utf-16-le"), "NUL bytes"),  # ASCII in UTF-16 is valid UTF-8, with NULs
    (bytes(range(256)), "not UTF-8 text"),
])
def test_other_encodings_are_refused_in_one_line(tmp_path, data, message):
    (tmp_path / "card.toml").write_bytes(data)
    with pytest.raises(InputError, match=message) as err:
        read_text(tmp_path / "card.toml", "model card")
    assert "save it as UTF-8" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_says_what_it_was_for(tmp_path):
    with pytest.raises(InputError, match="cannot read the labels"):
        read_text(tmp_path / "labels.csv", "labels")
