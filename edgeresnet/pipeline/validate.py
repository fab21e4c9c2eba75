"""`edgeresnet validate ARTIFACT --rpc ADDRESS`: the shipped artifact evaluated on boards of a device farm.

The boards are those `edgeresnet tune --rpc` measures on, reached by the artifact's
backend (its `DeviceFarm` capability). The artifact's golden vectors (or `--eval DATA`, with
the host's FP32 and INT8 logits computed here for it) run on the boards, sharded
across every free board under the key; the comparison is the devices' own
(`device_check.py`, the same code as `run.py --check`), and the result is folded
into the combined report beside the artifact (`edgeresnet report --device`).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgeresnet import metrics
from edgeresnet.artifact import MANIFEST, read_manifest
from edgeresnet.digest import sha256_file
from edgeresnet.schema import (DEVICE_REPORT_FILE, FP32_MODEL_FILE, GOLDEN_FOLDER, DeviceReport, Manifest, from_json,
                               to_json, write)
from edgeresnet.errors import InputError
from edgeresnet.targets import all_targets, backend_of, get_target
from edgeresnet.targets.capabilities import DeviceFarm

from .artifacts import check_artifact_folder
from .device_report import DeviceFold, fold_device_report


SHIPPED_METRICS = "metrics"  # the module name device_check.py imports edgeresnet.metrics by, beside it on the device


def device_check_module():
    """The device-side comparison code the artifacts ship (targets/templates/device_check.py), loaded as is.

    On the device it imports metrics.py from its own folder; here that is edgeresnet.metrics, the same file."""
    source = resources.files("edgeresnet.targets") / "templates" / "device_check.py"
    with resources.as_file(source) as path:
        spec = importlib.util.spec_from_file_location("edgeresnet_device_check", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
        shadowed = sys.modules.get(SHIPPED_METRICS)
        sys.modules[SHIPPED_METRICS] = metrics
        try:
            spec.loader.exec_module(module)
        finally:
            if shadowed is None:
                del sys.modules[SHIPPED_METRICS]
            else:
                sys.modules[SHIPPED_METRICS] = shadowed
    return module


@dataclass
class ValidateResult:
    fold: DeviceFold
    report: DeviceReport

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.fold.out, "label": self.fold.label, **to_json(self.report)}


def _golden_for(check, folder: Path, manifest: Manifest, target, eval_spec: str | None, eval_samples: int | None,
                seed: int):
    if eval_spec is None:
        try:
            return check.load_golden(folder / GOLDEN_FOLDER), "golden vectors"
        except SystemExit as exc:
            raise InputError(f"{folder}: {exc}") from None
    from edgeresnet.calibration import open_dataset
    from edgeresnet.evaluate import collect_logits
    from edgeresnet.preprocessing import Preprocessing
    from edgeresnet.runners import OnnxRuntimeRunner

    data = open_dataset(eval_spec, Preprocessing.from_dict(manifest.input.preprocessing), limit=eval_samples, seed=seed)
    fp32_runner = OnnxRuntimeRunner(folder / FP32_MODEL_FILE, label="FP32 model of the artifact")
    host = backend_of(target).host_reference(target, folder, manifest)
    meta = {"model": manifest.model.name, "target": target.name, "fp32_runtime": fp32_runner.runtime,
            "int8_runtime": host.runtime, "host_arch": platform.machine()}
    golden = check.Golden(data.images, data.labels, collect_logits(fp32_runner, data.images, progress=False),
                          collect_logits(host, data.images, progress=False), meta)
    return golden, f"{data.source} ({len(data)} images)"


def validate_artifact(artifact: str | Path, rpc: str, eval_spec: str | None = None, eval_samples: int | None = None,
                      seed: int = 0, out: str | Path | None = None, label: str | None = None,
                      min_agreement: float = 99.0, max_extra_drop: float = 0.5) -> ValidateResult:
    folder = Path(artifact)
    if not folder.is_dir():
        raise InputError(f"{folder}: validate needs an artifact folder (unpack a .tar.gz first)")
    check_artifact_folder(folder)
    manifest = read_manifest(folder)
    target = get_target(manifest.target.name)
    backend = backend_of(target)
    if not isinstance(backend, DeviceFarm):
        farms = sorted({t.backend for t in all_targets() if isinstance(backend_of(t), DeviceFarm)})
        raise InputError(f"validate --rpc runs an artifact on the boards of a device farm, which {', '.join(farms)} "
                         f"artifacts reach; {target.name} is a {backend.name} artifact (run its own run.py --check on the device)")
    backend.check_farm_address(rpc)
    check = device_check_module()
    golden, source = _golden_for(check, folder, manifest, target, eval_spec, eval_samples, seed)
    remote = backend.run_on_device_farm(target, folder, manifest, rpc, golden.inputs)
    facts = {"machine": f"{target.arch} (the target profile's; RPC does not report the board's)", "rpc": remote.address,
             "boards": remote.boards, "servers": remote.servers, "runtime": {**remote.runtime, "target": target.name}}
    runtime = f"{backend.name} RPC on {remote.boards} board(s) under {remote.address}"
    budget = check.Budget(min_agreement / 100.0, max_extra_drop)
    measured = check.device_report(remote.logits, golden, golden.labels, budget, facts, runtime, f"{source} via RPC",
                                   remote.latencies_ms, manifest.input.batch)
    report = from_json(DeviceReport, measured, DEVICE_REPORT_FILE)
    # This very artifact was run: its digest names the build even when the inputs are not its golden vectors.
    report.manifest_sha256 = sha256_file(folder / MANIFEST)
    with tempfile.TemporaryDirectory(prefix="edgeresnet-validate-") as tmp:
        path = Path(tmp) / DEVICE_REPORT_FILE
        write(report, path)
        fold = fold_device_report(folder, path, label or f"{runtime} ({target.name})", out)
    return ValidateResult(fold, report)
