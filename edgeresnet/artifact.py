"""The artifact folder: its manifest, its verification, and its .tar.gz form.

`manifest.json` lists the sha256 of every other file. Everything in it is
deterministic except the `build` field (timestamps, durations, host), which no
hash covers, so two builds from the same inputs list identical file hashes.

The manifest itself is protected from outside: its sha256 is the artifact's digest
(printed by `compile`, written beside the folder as NAME.manifest.sha256 in
`sha256sum` format, checked by `verify --digest`), and it can be signed with an
ed25519 key (`manifest.sig`, the one file the manifest cannot list). `verify` also
cross-checks the manifest's claims against the content (report.json's figures,
the ELF machine of shared libraries; `check_device_config` for a backend's device config).
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
import zlib
from importlib import metadata
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from edgeresnet.atomic import atomic_directory, write_bytes_atomically
from edgeresnet.errors import CheckFailed, InputError, MissingDependency
from edgeresnet.digest import sha256_file
from edgeresnet.integrity import SHA256_HEX, check_manifest_fields, cross_check
from edgeresnet.schema import (DIGEST_SUFFIX, MANIFEST_FILE, REPORT_FILE, SIGNATURE_FILE, DeviceConfig, Manifest, Report,
                               SchemaError, from_json, read, to_json, write)

MANIFEST = MANIFEST_FILE
SIGNATURE = SIGNATURE_FILE
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of Python packages, for the manifest ("not installed" where absent)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_manifest(folder: Path, manifest: Manifest, build_info: dict[str, Any]) -> Manifest:
    """Hash every file of `folder` into `manifest` and write it as manifest.json."""
    files = sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = replace(
        manifest, files={name: sha256_file(folder / name) for name in files},
        # Not covered by any hash: differs between otherwise identical builds.
        build={**build_info, "host": {"machine": platform.machine(), "python": platform.python_version()}},
    )
    write(manifest, folder / MANIFEST)
    return manifest


def read_manifest(folder: str | Path) -> Manifest:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not an artifact folder")
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckFailed(f"{folder}: no {MANIFEST}; not a complete edgeresnet artifact")
    try:
        return read(Manifest, path)
    except SchemaError as exc:
        raise CheckFailed(str(exc)) from None


@contextlib.contextmanager
def opened(artifact: str | Path) -> Iterator[Path]:
    """The artifact folder itself, or a .tar.gz of one unpacked (safely) into a temporary folder."""
    artifact = Path(artifact)
    if artifact.is_file() and artifact.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tempfile.TemporaryDirectory(prefix="edgeresnet-artifact-") as tmp:
            unpacked = safe_extract(artifact, Path(tmp) / "unpacked")
            folders = [p for p in unpacked.iterdir() if p.is_dir()]
            folder = folders[0] if len(folders) == 1 and not (unpacked / MANIFEST).exists() else unpacked
            if not (folder / MANIFEST).is_file():
                # Named by the archive: the temporary folder means nothing to the user.
                raise CheckFailed(f"{artifact}: the archive holds no {MANIFEST}; not an edgeresnet artifact")
            yield folder
        return
    if artifact.is_file():
        raise InputError(f"{artifact}: not an artifact (a folder, or its .tar.gz)")
    yield artifact


@dataclass(frozen=True)
class Verification:
    artifact: str
    target: str
    files: int
    ok: bool = True
    digest: str = ""  # sha256 of manifest.json
    signature: str = "none"  # "none", "present, not checked (...)" or "valid (ed25519, KEY)"
    rerun: str = ""  # which shipped models were re-run against the golden logits (integrity.cross_check)
    device_outputs: str = ""  # the device folder beside the artifact, when device commands wrote one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEVICE_FOLDER_SUFFIX = ".device"  # device_io.DEVICE_FOLDER_SUFFIX, where the device commands write


def device_output_folder(folder: Path) -> Path:
    """`<artifact>.device`: engines, build records, timing caches and device reports written on the device."""
    return folder.with_name(folder.name + DEVICE_FOLDER_SUFFIX)


def describe_device_outputs(folder: Path) -> str:
    """What the device commands wrote beside the artifact; not part of it, so not verified."""
    outputs = device_output_folder(folder)
    if not outputs.is_dir():
        return ""
    count = sum(1 for p in outputs.rglob("*") if p.is_file())
    return f"{outputs}: {count} device-written files (engines, build records, device reports), not part of the artifact"


def manifest_digest(folder: str | Path) -> str:
    return sha256_file(Path(folder) / MANIFEST)


def digest_file_of(destination: Path) -> Path:
    return destination.with_name(destination.name + DIGEST_SUFFIX)


def write_digest_file(destination: Path, digest: str) -> Path:
    """NAME.manifest.sha256 beside the folder: `sha256sum -c` checks it from the folder's parent."""
    path = digest_file_of(destination)
    write_bytes_atomically(path, f"{digest}  {destination.name}/{MANIFEST}\n".encode())
    return path


def _load_key(path: str | Path, private: bool):
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ModuleNotFoundError:
        raise MissingDependency("signing needs the 'cryptography' package: pip install 'edgeresnet[sign]'") from None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key ({exc.strerror or exc})") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        kind = "private" if private else "public"
        raise InputError(f"{path}: not a PEM {kind} key without a password ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    expected = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, expected):
        raise InputError(f"{path}: an ed25519 key is needed, not {type(key).__name__.lstrip('_')} "
                         f"(openssl genpkey -algorithm ed25519 -out key.pem)")
    return key


def sign_folder(folder: Path, private_key: str | Path) -> None:
    """Write manifest.sig: the ed25519 signature of manifest.json's bytes (which hold every file's sha256)."""
    key = _load_key(private_key, private=True)
    write_bytes_atomically(folder / SIGNATURE, key.sign((folder / MANIFEST).read_bytes()))


ED25519_SIGNATURE_BYTES = 64  # RFC 8032: manifest.sig is the raw signature, not hex or base64 text


def check_signature_form(folder: Path) -> None:
    """A manifest.sig that cannot be an ed25519 signature fails with or without a key to check it against."""
    path = folder / SIGNATURE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise CheckFailed(f"{SIGNATURE}: not a regular file")
    if path.is_file() and path.stat().st_size != ED25519_SIGNATURE_BYTES:
        raise CheckFailed(f"{SIGNATURE}: {path.stat().st_size} bytes, not a raw {ED25519_SIGNATURE_BYTES}-byte ed25519 "
                          "signature (compile --sign-key writes one)")


def check_signature(folder: Path, public_key: str | Path) -> None:
    key = _load_key(public_key, private=False)
    from cryptography.exceptions import InvalidSignature

    if not (folder / SIGNATURE).is_file():
        raise CheckFailed(f"{folder}: not signed (no {SIGNATURE}), but --public-key asks for a signature")
    try:
        key.verify((folder / SIGNATURE).read_bytes(), (folder / MANIFEST).read_bytes())
    except InvalidSignature:
        raise CheckFailed(f"{SIGNATURE}: the signature does not match {MANIFEST} under the key {public_key} "
                          f"(another signer, or the manifest was changed)") from None


def elf_machine(path: Path) -> str | None:
    """The machine an ELF file is built for (e_machine), or None when it is not ELF."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    code = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(code, f"machine {code}")


def _claims_match(manifest: Manifest, folder: Path) -> None:
    """What the manifest says against what the files say: report.json's figures, configs, libraries."""
    target = manifest.target
    report_path = folder / REPORT_FILE
    if report_path.is_file() and REPORT_FILE in manifest.files:
        try:
            report = read(Report, report_path)
        except SchemaError as exc:
            raise CheckFailed(str(exc).replace(str(report_path), REPORT_FILE)) from None
        accuracy = manifest.accuracy
        claims = {
            "target.name": (target.name, report.target),
            "model.name": (manifest.model.name, report.model),
            "accuracy.drop_pts": (accuracy and accuracy.drop_pts, report.drop_pts),
            "accuracy.agreement": (accuracy and accuracy.agreement, report.agreement),
            "accuracy.gate": (accuracy and accuracy.gate, report.gate),
            "accuracy.fp32_top1": (accuracy and accuracy.fp32_top1, report.fp32.top1),
            "accuracy.int8_top1": (accuracy and accuracy.int8_top1, report.int8.top1),
            "accuracy.eval_samples": (accuracy and accuracy.eval_samples, report.int8.samples),
            "input.num_classes": (manifest.input.num_classes, report.model_description.num_classes),
            "input.class_names": (manifest.input.class_names, report.class_names),
        }
        for claim, (said, measured) in claims.items():
            if said != measured:
                raise CheckFailed(f"manifest {claim} is {to_json(said)!r}, but report.json says {to_json(measured)!r}: the manifest was edited")
    for name in manifest.files:
        if name.endswith(".so") and target.arch in ELF_MACHINES.values():
            machine = elf_machine(folder / name)
            if machine != target.arch:
                raise CheckFailed(f"{name} is {'not an ELF library' if machine is None else 'built for ' + machine}, "
                                  f"but the manifest's target {target.name} is {target.arch}")


def check_device_config(folder: Path, manifest: Manifest, name: str) -> None:
    """The config the device runner reads (target, input shape, preprocessing) against the manifest's record."""
    if name not in manifest.files:
        return
    target = manifest.target
    try:
        config = from_json(DeviceConfig, json.loads((folder / name).read_text()), name)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckFailed(f"{name}: not valid JSON") from None
    except SchemaError as exc:
        raise CheckFailed(str(exc)) from None
    if config.target not in (None, target.name):
        raise CheckFailed(f"manifest target.name is {target.name!r}, but {name} was built for {config.target!r}")
    if config.preprocessing is not None:
        recorded = manifest.input.preprocessing
        wrong = sorted(k for k, v in config.preprocessing.items() if recorded.get(k) != v)
        if wrong:
            raise CheckFailed(f"manifest input ({', '.join(wrong)}) differs from the preprocessing {name} ships to the device")
    if config.input_shape is not None and list(config.input_shape[1:]) != [manifest.input.channels, *manifest.input.input_size]:
        raise CheckFailed(f"manifest input {manifest.input.input_size} differs from {name}'s input shape {config.input_shape}")


def expected_digest(digest: str) -> str:
    """`--digest` as given (sha256:HEX or HEX, either case, as sha256sum or a registry prints it), as lowercase hex."""
    if not isinstance(digest, str):
        raise InputError(f"--digest: a sha256 was expected, not {type(digest).__name__}")
    wanted = digest.strip()
    wanted = wanted[len("sha256:"):] if wanted.lower().startswith("sha256:") else wanted
    if not SHA256_HEX.fullmatch(wanted.lower()):
        shown = wanted if len(wanted) <= 80 else wanted[:77] + "..."
        raise InputError(f"--digest {shown!r} is not a sha256 (64 hex digits, optionally after 'sha256:'); "
                         f"compile prints it and writes it to NAME{DIGEST_SUFFIX}")
    return wanted.lower()


def verify_folder(folder: Path, digest: str | None = None, public_key: str | Path | None = None) -> Verification:
    """Check the manifest (against --digest and the signature when given), every file's hash, the files
    its target ships, that nothing unlisted is present, the manifest's claims against the content, and
    the files against each other (integrity.cross_check)."""
    wanted = expected_digest(digest) if digest is not None else None
    if wanted is not None and (folder / MANIFEST).is_file():
        actual = manifest_digest(folder)
        if wanted != actual:
            raise CheckFailed(f"{MANIFEST}: digest sha256:{actual} is not the expected sha256:{wanted} (a different or altered artifact)")
    manifest = read_manifest(folder)
    check_signature_form(folder)
    if public_key is not None:
        check_signature(folder, public_key)
    check_manifest_fields(manifest)
    links = sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_symlink())
    if links:
        raise CheckFailed(f"{links[0]}: a symbolic link; an artifact holds regular files only")
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise CheckFailed(f"{name}: listed in the manifest but missing")
        if sha256_file(path) != expected:
            raise CheckFailed(f"{name}: sha256 does not match the manifest (file changed after the build)")
    listed = set(manifest.files) | {MANIFEST, SIGNATURE}
    present = sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())
    unlisted = [name for name in present if name not in listed]
    if unlisted:
        raise CheckFailed(f"{unlisted[0]}: not listed in the manifest")
    target = manifest.target.name
    absent = sorted(set(manifest.target.files) - set(manifest.files))
    if absent:
        raise CheckFailed(f"{absent[0]}: the {target} target ships it, but the artifact lacks it")
    _claims_match(manifest, folder)
    rerun = cross_check(folder, manifest)
    signature = (f"valid (ed25519, {Path(public_key).name})" if public_key is not None
                 else "present, not checked (pass --public-key)" if (folder / SIGNATURE).is_file() else "none")
    return Verification(str(folder), target, len(manifest.files), digest=manifest_digest(folder), signature=signature,
                        rerun=rerun, device_outputs=describe_device_outputs(folder))


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
    """Unpack an artifact .tar.gz, refusing what `pack` never writes: absolute paths, '..', links (an artifact
    holds regular files only), device files, and names that occur twice (the later member would silently
    replace the one a listing shows)."""
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            seen: set[str] = set()
            for member in members:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or "\\" in member.name:
                    raise InputError(f"{archive}: refused, entry {member.name!r} would be written outside the folder")
                if member.issym() or member.islnk():
                    target = PurePosixPath(member.linkname)
                    resolved = os.path.normpath(str(name.parent / target))
                    where = "points outside the folder" if target.is_absolute() or resolved.startswith("..") else "is a link"
                    raise InputError(f"{archive}: refused, link {member.name!r} {where}; an artifact holds regular files only")
                if not (member.isfile() or member.isdir()):
                    raise InputError(f"{archive}: refused, entry {member.name!r} is a device or special file")
                normal = os.path.normpath(member.name)
                if normal in seen and not member.isdir():
                    raise InputError(f"{archive}: refused, entry {member.name!r} occurs twice")
                seen.add(normal)
            with atomic_directory(destination) as staging:
                tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        detail = "not gzip/bzip2/xz-compressed, nor a plain tar" if "could not be opened successfully" in str(exc) else str(exc).splitlines()[0]
        raise InputError(f"{archive}: not a readable .tar.gz ({detail})") from None
    return destination
