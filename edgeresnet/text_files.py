"""Small text files (model cards, class names, label tables) as other systems write them.

Windows editors start UTF-8 with a byte-order mark, Excel's "Unicode Text" export is UTF-16 with one, and
line ends are LF, CRLF or CR: all are read as the same text. Anything else that is not UTF-8 (a legacy
code page such as Windows-1252) is refused rather than guessed.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from edgeresnet.errors import InputError

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: str | Path, what: str) -> str:
    """The text of `path` (UTF-8, or any UTF with its byte-order mark), line ends made "\\n"; `what` names the file
    in the one-line error ("model card", "class names", "labels")."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read the {what}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if "\x00" in text:  # valid UTF-8, but no text file holds NUL: UTF-16 without its byte-order mark, or binary
        raise InputError(f"{path}: cannot read the {what}: not UTF-8 text (it holds NUL bytes); save it as UTF-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")
