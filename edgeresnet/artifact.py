"""The artifact folder: its manifest, its verification, and its .tar.gz form.

`manifest.json` lists the sha256 of every other file. Everything in it is
deterministic except the `build` field (timestamps, durations, host), which no
hash covers, so two builds from the same inputs list identical file hashes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import platform
import tarfile
import tempfile
from importlib import metadata
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from edgeresnet import __version__
from edgeresnet.atomic import atomic_directory, write_bytes_atomically
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.digest import sha256_file

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgeresnet.manifest/1"
REQUIRED_KEYS = ("schema", "edgeresnet_version", "model", "input", "calibration", "target", "toolchain", "accuracy", "files")


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of Python packages, for the manifest ("not installed" where absent)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_manifest(folder: Path, content: dict[str, Any], build_info: dict[str, Any]) -> dict[str, Any]:
    files = sorted(
        str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
    )
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "edgeresnet_version": __version__,
        **content,
        "files": {name: sha256_file(folder / name) for name in files},
        # Not covered by any hash: differs between otherwise identical builds.
        "build": {**build_info, "host": {"machine": platform.machine(), "python": platform.python_version()}},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not an artifact folder")
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckFailed(f"{folder}: no {MANIFEST}; not a complete edgeresnet artifact")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckFailed(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise CheckFailed(f"{path}: unknown manifest schema {manifest.get('schema') if isinstance(manifest, dict) else None!r}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise CheckFailed(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


@contextlib.contextmanager
def opened(artifact: str | Path) -> Iterator[Path]:
    """The artifact folder itself, or a .tar.gz of one unpacked (safely) into a temporary folder."""
    artifact = Path(artifact)
    if artifact.is_file() and artifact.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tempfile.TemporaryDirectory(prefix="edgeresnet-artifact-") as tmp:
            unpacked = safe_extract(artifact, Path(tmp) / "unpacked")
            folders = [p for p in unpacked.iterdir() if p.is_dir()]
            yield folders[0] if len(folders) == 1 and not (unpacked / MANIFEST).exists() else unpacked
        return
    yield artifact


@dataclass(frozen=True)
class Verification:
    artifact: str
    target: str
    files: int
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_folder(folder: Path) -> Verification:
    """Check the manifest, every file's hash, and that the files its target ships are there."""
    manifest = read_manifest(folder)
    for name, expected in manifest["files"].items():
        path = folder / name
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise CheckFailed(f"manifest names a file outside the artifact: {name}")
        if not path.is_file():
            raise CheckFailed(f"{name}: listed in the manifest but missing")
        if sha256_file(path) != expected:
            raise CheckFailed(f"{name}: sha256 does not match the manifest (file changed after the build)")
    listed = set(manifest["files"]) | {MANIFEST}
    present = sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())
    unlisted = [name for name in present if name not in listed]
    if unlisted:
        raise CheckFailed(f"{unlisted[0]}: not listed in the manifest")
    target = manifest["target"]["name"]
    absent = sorted(set(manifest["target"].get("files", [])) - set(manifest["files"]))
    if absent:
        raise CheckFailed(f"{absent[0]}: the {target} target ships it, but the artifact lacks it")
    return Verification(str(folder), target, len(manifest["files"]))


def _reset_tarinfo(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(folder: Path, archive: Path) -> None:
    """A reproducible .tar.gz of the artifact (sorted names, zeroed times and owners)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=f"{folder.name}/{path.relative_to(folder).as_posix()}", recursive=False, filter=_reset_tarinfo)
    write_bytes_atomically(archive, gzip.compress(raw.getvalue(), mtime=0))


def safe_extract(archive: str | Path, destination: str | Path) -> Path:
    """Unpack an artifact .tar.gz, refusing absolute paths, '..', links leaving the folder and device files."""
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise InputError(f"{archive}: refused, entry {member.name!r} would be written outside the folder")
                if member.issym() or member.islnk():
                    target = PurePosixPath(member.linkname)
                    resolved = os.path.normpath(str(name.parent / target))
                    if target.is_absolute() or resolved.startswith(".."):
                        raise InputError(f"{archive}: refused, link {member.name!r} points outside the folder")
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise InputError(f"{archive}: refused, entry {member.name!r} is a device or special file")
            with atomic_directory(destination) as staging:
                tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{archive}: not a readable .tar.gz ({exc})") from None
    return destination
