"""The on-device accuracy check: run the artifact's golden inputs here and compare with the host's logits.

Shipped beside run.py in every artifact (numpy only), with metrics.py, which
computes every figure here as the host computes report.json's. `golden/` holds a
deterministic sample of the evaluation set, preprocessed exactly as the runner
feeds it (float32 NCHW), its labels when known, the FP32 reference logits
(PyTorch) and the INT8 logits the host measured for the shipped model. The check
writes device-report.json (schema edgeresnet.device-report/1; its drift fields are
named as in report.json) and fails when the device drifts past the budget:

  * top-1 agreement with the host INT8 logits below --min-agreement (default 99%), or
  * the top-1 drop against FP32 larger than the host's own drop + --max-extra-drop
    (default 0.5 points; on unlabelled inputs the drop is the share of predictions
    that changed against FP32, as in report.json).

Exit codes of the runners: 0 within budget, 1 drifted past it, 2 bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from metrics import drift, drop_pts, top1  # shipped beside this file: the host's own metrics module

SCHEMA = "edgeresnet.device-report/1"
GOLDEN_SCHEMA = "edgeresnet.golden/1"
REPORT_FILE = "device-report.json"
DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_MAX_EXTRA_DROP = 0.5
EXIT_DRIFTED = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Budget:
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # top-1 agreement with the host INT8 logits, 0..1
    max_extra_drop: float = DEFAULT_MAX_EXTRA_DROP  # points of top-1 drop beyond the host's own drop


@dataclass
class Golden:
    inputs: np.ndarray  # float32 [N, C, H, W], exactly what the runner feeds
    labels: np.ndarray | None
    fp32_logits: np.ndarray
    int8_logits: np.ndarray  # the host's INT8 logits of the shipped model
    meta: dict[str, Any]


def add_check_arguments(parser, golden_default: Path) -> None:
    group = parser.add_argument_group("on-device accuracy check (golden vectors)")
    group.add_argument("--check", action="store_true",
                       help="run golden/ (or a labelled --images folder) and compare with the host's logits; "
                            f"writes {REPORT_FILE}, exits 1 past the budget")
    group.add_argument("--golden", default=str(golden_default), help="golden vectors folder [default: the artifact's golden/]")
    group.add_argument("--report", default=None,
                       help=f"where to write the device report [default: {REPORT_FILE} in the device folder, see --device-dir]")
    group.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT * 100,
                       help="minimum top-1 agreement with the host INT8 logits, percent [default: 99]")
    group.add_argument("--max-extra-drop", type=float, default=DEFAULT_MAX_EXTRA_DROP,
                       help="allowed top-1 drop against FP32 beyond the host's drop, points [default: 0.5]")


def require_inputs(parser, args) -> None:
    """A runner needs inputs: --images or --npy, or --check (golden/, or a labelled --images folder)."""
    if not args.check and not (args.images or args.npy):
        parser.error("pass --images or --npy (or --check)")
    if args.check and args.npy:
        parser.error("--check runs golden/ or a labelled --images folder, not --npy")


def budget_from(args) -> Budget:
    return Budget(args.min_agreement / 100.0, args.max_extra_drop)


def refuse(message: str) -> SystemExit:
    """Bad input (golden vectors, a report path): one line on stderr, exit 2."""
    sys.stderr.write(f"check: {' '.join(message.split())}\n")
    return SystemExit(EXIT_BAD_INPUT)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    if not np.isfinite(float(text)):
        raise ValueError(f"the number {text} is out of range")
    return float(text)


def _load(folder: Path, name: Any, kind: str, ndim: int) -> np.ndarray:
    """One golden array: a plain .npy inside `folder`, of the given kind ('f' float, 'i' integer) and rank, finite."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise refuse(f"{folder}/golden.json names {name!r} as a golden file: not a file name inside {folder}")
    try:
        array = np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise refuse(f"{folder / name}: not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if array.dtype.kind != kind or array.ndim != ndim or (kind == "f" and not np.isfinite(array).all()):
        raise refuse(f"{folder / name}: {array.dtype} {list(array.shape)} is not the {ndim}-D "
                     f"{'finite float' if kind == 'f' else 'integer'} array golden vectors hold")
    return array


def load_golden(folder: str | Path) -> Golden:
    folder = Path(folder)
    meta_path = folder / "golden.json"
    if not meta_path.is_file():
        raise refuse(f"{folder} holds no golden.json (an artifact compiled by edgeresnet has golden/)")
    try:
        meta = json.loads(meta_path.read_bytes(), parse_constant=_refuse_constant, parse_float=_finite)
    except (OSError, ValueError, RecursionError) as exc:
        raise refuse(f"{meta_path}: not valid JSON ({str(exc) or type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("schema") != GOLDEN_SCHEMA:
        raise refuse(f"{meta_path}: unknown schema {meta.get('schema') if isinstance(meta, dict) else None!r}")
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(meta.get(k), str) for k in ("fp32_runtime", "int8_runtime")):
        raise refuse(f"{meta_path}: lacks its files or the runtimes of its logits")
    labels = _load(folder, files["labels"], "i", 1) if files.get("labels") else None
    golden = Golden(_load(folder, files.get("inputs"), "f", 4).astype(np.float32), labels,
                    _load(folder, files.get("fp32_logits"), "f", 2), _load(folder, files.get("int8_logits"), "f", 2), meta)
    rows = {len(golden.inputs), len(golden.fp32_logits), len(golden.int8_logits)} | ({len(labels)} if labels is not None else set())
    if len(rows) != 1 or golden.fp32_logits.shape != golden.int8_logits.shape:
        raise refuse(f"{folder}: inputs, labels and logits hold different numbers of rows or classes {sorted(rows)}")
    return golden


def artifact_digest(golden_folder: str | Path) -> str | None:
    """sha256 of the manifest of the artifact whose golden/ this is, so the host can tell the build it measured."""
    manifest = Path(golden_folder).parent / "manifest.json"
    return hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None


def timed_logits(infer: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int,
                 warmup: int = 3) -> tuple[np.ndarray, list[float]]:
    """All logits, batch by batch (the last one padded to the static batch), and each batch's latency in ms."""
    for _ in range(warmup):
        infer(np.ascontiguousarray(inputs[:batch], dtype=np.float32))
    outputs, latencies = [], []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start:start + batch]
        rows = len(chunk)
        if rows < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
        began = time.perf_counter()
        outputs.append(np.asarray(infer(np.ascontiguousarray(chunk, dtype=np.float32)))[:rows])
        latencies.append((time.perf_counter() - began) * 1000)
    return np.concatenate(outputs).astype(np.float32), latencies


def compare(reference: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """The drift of `test` from `reference`: the fields of report.json's "drift", plus the mean |delta logit|."""
    if reference.shape != test.shape:
        raise SystemExit(f"check: logit shapes differ: reference {reference.shape}, device {test.shape}")
    return drift(reference, test)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    # x86 names itself; ARM kernels give an implementer/part pair (and Raspberry Pi a "Model" line).
    if fields.get("model name"):
        return fields["model name"]
    parts = [f"{k} {fields[k]}" for k in ("CPU implementer", "CPU part", "Hardware", "Model") if fields.get(k)]
    return ", ".join(parts) or "unknown"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_bytes().rstrip(b"\0\n").decode(errors="replace").strip() or None
    except OSError:
        return None


def _power_mode() -> str | None:
    """The Jetson power mode (nvpmodel), where readable; None elsewhere."""
    if shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
            lines = [line.strip() for line in out.splitlines() if line.strip()]
            if lines:
                return " ".join(lines)
        except (OSError, subprocess.SubprocessError):
            pass
    return _read("/var/lib/nvpmodel/status")


def device_facts(runtime: dict[str, Any]) -> dict[str, Any]:
    """What this device is: `uname -m`, CPU, board, kernel, power mode, and the runtime's own versions."""
    uname = os.uname()
    facts = {
        "machine": uname.machine,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "board": _read("/proc/device-tree/model"),
        "kernel": f"{uname.sysname} {uname.release}",
        "l4t_release": _read("/etc/nv_tegra_release"),
        "power_mode": _power_mode(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime": runtime,
    }
    return {k: v for k, v in facts.items() if v is not None}


def _latency(latencies: list[float], batch: int) -> dict[str, Any]:
    if not latencies:
        return {}
    return {"batch": batch, "runs": len(latencies),
            **{p: round(float(np.percentile(latencies, int(p[1:]))), 4) for p in ("p50", "p90", "p99")}}


def device_report(device_logits: np.ndarray, golden: Golden | None, labels: np.ndarray | None, budget: Budget,
                  facts: dict[str, Any], runtime_label: str, source: str, latencies: list[float] | None = None,
                  batch: int = 1) -> dict[str, Any]:
    """The device's logits against the golden references (or, on the user's own labelled data, accuracy only)."""
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "source": source,
        "samples": int(len(device_logits)),
        "device": facts,
        "int8": {"runtime": runtime_label, "arch": facts.get("machine"), "samples": int(len(device_logits))},
        "latency_ms": _latency(latencies or [], batch),
        "budget": asdict(budget),
    }
    reasons: list[str] = []
    if labels is not None:
        report["int8"]["top1"] = top1(device_logits, labels)
    if golden is None:
        report["note"] = "no host references for these inputs: accuracy on their labels only, no drift check"
        report.update(passed=True, reasons=reasons, verdict="measured (no references)")
        return report
    meta = golden.meta
    fp32, host = golden.fp32_logits, golden.int8_logits
    report["model"], report["target"] = meta.get("model"), meta.get("target")
    report["fp32"] = {"runtime": meta["fp32_runtime"], "samples": int(len(fp32))}
    report["host_int8"] = {"runtime": meta["int8_runtime"], "arch": meta.get("host_arch"), "samples": int(len(host))}
    if labels is not None:
        report["fp32"]["top1"] = top1(fp32, labels)
        report["host_int8"]["top1"] = top1(host, labels)
    drift, host_drift = compare(fp32, device_logits), compare(host, device_logits)
    drop, host_drop = drop_pts(fp32, device_logits, labels), drop_pts(fp32, host, labels)
    report.update({
        "drop_pts": drop,  # device vs FP32, as report.json's drop_pts
        "agreement": drift["agreement"],  # device vs FP32, as report.json's agreement
        "drift": drift,
        "host_drop_pts": host_drop,
        "host_agreement": host_drift["agreement"],  # device vs the host's INT8: the drift the device adds
        "host_drift": host_drift,
    })
    report["budget"]["max_drop_pts"] = round(host_drop + budget.max_extra_drop, 4)
    if host_drift["agreement"] < budget.min_agreement:
        reasons.append(f"top-1 agreement with the host INT8 {host_drift['agreement'] * 100:.2f}% < {budget.min_agreement * 100:.2f}%")
    if drop > host_drop + budget.max_extra_drop + 1e-9:
        reasons.append(f"drop vs FP32 {drop:+.2f} pts > host drop {host_drop:+.2f} + {budget.max_extra_drop} pts")
    report.update(passed=not reasons, reasons=reasons, verdict="PASS" if not reasons else "DRIFT")
    return report


def verdict_lines(report: dict[str, Any]) -> list[str]:
    facts = report["device"]
    lines = [f"device: {facts.get('machine')}, {facts.get('cpu_model')}; runtime {report['int8']['runtime']}; {report['samples']} inputs ({report['source']})"]
    if "top1" in report["int8"]:
        fp32 = report.get("fp32", {}).get("top1")
        lines.append(f"top-1 on the labels: device {report['int8']['top1']:.2f}%"
                     + (f", host INT8 {report['host_int8']['top1']:.2f}%, FP32 {fp32:.2f}%" if fp32 is not None else ""))
    if "host_drift" in report:
        h, d = report["host_drift"], report["drift"]
        lines.append(f"vs host INT8: agreement {h['agreement'] * 100:.2f}%, cosine {h['cosine']:.6f}, "
                     f"|delta logit| max {h['max_abs_diff']:.4g} mean {h['mean_abs_diff']:.4g}")
        lines.append(f"vs FP32: agreement {d['agreement'] * 100:.2f}%, cosine {d['cosine']:.6f}, drop {report['drop_pts']:+.2f} pts "
                     f"(host {report['host_drop_pts']:+.2f}, budget {report['budget']['max_drop_pts']:+.2f})")
    if report["latency_ms"]:
        lat = report["latency_ms"]
        lines.append(f"latency per batch of {lat['batch']}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms")
    lines.append(f"verdict: {report['verdict']}" + (f": {'; '.join(report['reasons'])}" if report["reasons"] else ""))
    return lines


def write_report(report: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)


def run_check(args, infer: Callable[[np.ndarray], np.ndarray], batch: int, runtime: dict[str, Any], runtime_label: str,
              load_images: Callable[[str], tuple[np.ndarray, np.ndarray | None]]) -> int:
    """--check: golden/ (or a labelled --images folder), the report, the verdict; returns the exit code."""
    budget = budget_from(args)
    if getattr(args, "images", None):
        inputs, labels = load_images(args.images)
        if labels is None:
            raise SystemExit("check: --images needs a labelled folder (one sub-folder per class) to measure accuracy")
        golden, source = None, f"labelled images in {args.images}"
    else:
        golden = load_golden(args.golden)
        inputs, labels, source = golden.inputs, golden.labels, f"golden vectors ({args.golden})"
    logits, latencies = timed_logits(infer, inputs, batch, warmup=min(args.warmup, 3))
    report = device_report(logits, golden, labels, budget, device_facts(runtime), runtime_label, source, latencies, batch)
    if golden is not None and artifact_digest(args.golden):
        report["manifest_sha256"] = artifact_digest(args.golden)
    write_report(report, args.report)
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(verdict_lines(report)))
        print(f"wrote {args.report}")
    return 0 if report["passed"] else EXIT_DRIFTED
