"""Labels as data sets ship them beside a folder of images: a CSV or TSV file of `filename,label`.

The label is a class index or a class name; a header row is optional (it is the first row
when its file name is no image of the folder, and it may name the columns: file/filename/
image/path/id, label/class/category/target). File names are paths relative to the folder,
bare names, or names without their extension, whichever is unique. A flat folder without
`--labels` takes the first of these that exists: FOLDER/labels.csv, FOLDER/labels.tsv,
FOLDER.csv, FOLDER.tsv (beside the folder).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeresnet.errors import InputError
from edgeresnet.text_files import read_text

FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_id", "img", "path", "name", "id")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "category", "target", "y")


@dataclass(frozen=True)
class LabelTable:
    """One label per image file, as class indices, and the class names when the file gave names."""

    file: Path
    labels: dict[Path, int]
    class_names: tuple[str, ...]  # () when the file gave indices
    by: str  # "class index" or "class name"


def beside(folder: Path) -> Path | None:
    """The labels file that goes with a flat folder, if any."""
    for candidate in (folder / "labels.csv", folder / "labels.tsv",
                      folder.with_name(folder.name + ".csv"), folder.with_name(folder.name + ".tsv")):
        if candidate.is_file():
            return candidate
    return None


def _rows(file: Path) -> list[list[str]]:
    text = read_text(file, "labels")
    first = next((line for line in text.split("\n") if line.strip()), None)
    if first is None:
        raise InputError(f"{file}: no labels (expected rows of filename,label)")
    delimiter = "\t" if file.suffix.lower() == ".tsv" or "\t" in first else (";" if ";" in first and "," not in first else ",")
    # Parsed as a whole, not line by line: a quoted file name may hold the delimiter or a newline (pandas quotes both).
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
    return [row for row in rows if any(row)]


def read_labels(file: Path, folder: Path, images: list[Path], model_class_names: tuple[str, ...]) -> LabelTable:
    """The label of every image in `images` (files under `folder`) from a CSV/TSV file; an image without one is refused."""
    rows = _rows(file)
    by_relative = {p.relative_to(folder).as_posix(): p for p in images}
    by_name: dict[str, list[Path]] = {}
    for p in images:
        by_name.setdefault(p.name, []).append(p)
        by_name.setdefault(p.stem, []).append(p)

    def image_of(name: str) -> Path | None:
        name = name.replace("\\", "/").removeprefix("./")
        if name in by_relative:
            return by_relative[name]
        found = by_name.get(name) or by_name.get(Path(name).name) or []
        return found[0] if len(found) == 1 else None

    file_column, label_column = 0, 1
    if rows and image_of(rows[0][0]) is None:  # a header
        header = [cell.lower() for cell in rows[0]]
        file_column = next((i for i, c in enumerate(header) if c in FILE_COLUMNS), 0)
        label_column = next((i for i, c in enumerate(header) if c in LABEL_COLUMNS), 1 if file_column == 0 else 0)
        rows = rows[1:]
    if any(len(row) <= max(file_column, label_column) for row in rows):
        bad = next(row for row in rows if len(row) <= max(file_column, label_column))
        raise InputError(f"{file}: rows are filename,label; found {','.join(bad)!r}")
    values: dict[Path, str] = {}
    unknown = []
    for row in rows:
        image = image_of(row[file_column])
        if image is None:
            unknown.append(row[file_column])
        else:
            values[image] = row[label_column]
    unlabelled = [p for p in images if p not in values]
    if unlabelled:
        hint = f" (it names {len(unknown)} file(s) not found, e.g. {unknown[0]!r})" if unknown else ""
        raise InputError(f"{file}: no label for {len(unlabelled)} of the {len(images)} images in {folder}, "
                         f"e.g. {unlabelled[0].relative_to(folder)}{hint}")
    texts = set(values.values())
    numbers = {t: _number(t) for t in texts}
    if all(v is not None for v in numbers.values()):
        # Indices, also as a spreadsheet or pandas writes them ("3.0"); anything else numeric is no class.
        indices = {t: int(v) for t, v in numbers.items() if v is not None and v.is_integer() and v >= 0}
        odd = sorted(set(texts) - set(indices))
        if odd:
            raise InputError(f"{file}: a numeric label is a class index, a whole number 0 or more, not {odd[0]!r}")
        return LabelTable(file, {p: indices[v] for p, v in values.items()}, (), "class index")
    if model_class_names and texts <= set(model_class_names):
        names = tuple(model_class_names)
    elif model_class_names and texts & set(model_class_names):
        unknown = sorted(texts - set(model_class_names))
        raise InputError(f"{file}: label(s) {', '.join(map(repr, unknown[:5]))} are not among the model's "
                         f"{len(model_class_names)} class names, while the other labels are; correct them")
    else:
        names = tuple(sorted(texts))
    index = {name: i for i, name in enumerate(names)}
    return LabelTable(file, {p: index[v] for p, v in values.items()}, names, "class name")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def labels_of(table: LabelTable, chosen: list[Path]) -> np.ndarray:
    return np.array([table.labels[p] for p in chosen], np.int64)
