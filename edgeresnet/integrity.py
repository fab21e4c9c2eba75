"""Cross-checks between an artifact's own files: what still tells when files were changed and re-hashed.

Whoever edits a file and writes its new sha256 into manifest.json leaves every hash
consistent; only a digest or signature from outside (`verify --digest`,
`--public-key`) catches that. Without them, the files can still be held to each
other, as in-toto and TUF hold metadata to the artifacts they describe rather than
only to their own hashes:

* the manifest's own fields are well-formed: every digest 64 lowercase hex digits,
  every listed name a plain relative path;
* golden/golden.json against the arrays it names: their dtype, shape and row count,
  the model's input shape and class count, finite values, the recorded host top-1
  recomputed from the logits and labels;
* the ONNX models against the manifest: the input tensor's name, dtype and shape,
  the number of classes, Q/DQ nodes in INT8 models and none in the FP32 one;
* the shipped ONNX models re-run in ONNX Runtime on the first golden inputs, against
  the golden logits: the FP32 model tightly, INT8 and float device models within a
  tolerance wide enough for another CPU's integer kernels, narrow enough to tell
  another model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgeresnet import metrics
from edgeresnet.errors import CheckFailed
from edgeresnet.schema import (FP32_MODEL_FILE, GOLDEN_FOLDER, GOLDEN_META_FILE, MANIFEST_FILE, SIGNATURE_FILE, GoldenMeta,
                               Manifest, SchemaError, read)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
RERUN_INPUT_BYTES = 8 << 20  # golden inputs re-run per model: all of a small model's, 16 of a ResNet-50's at 224
RERUN_MIN_ROWS = 16
FP32_TOLERANCE = 1e-3  # of the largest |logit|: batch shape and kernel choice move FP32 logits by far less
# INT8 and float device models: another CPU's integer kernels (VNNI or not) stay above these; another model does not.
MIN_COSINE, MIN_ROW_COSINE, MIN_AGREEMENT = 0.98, 0.9, 0.8


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


def check_manifest_fields(manifest: Manifest) -> None:
    """Digests and listed names in the forms compile writes them; anything else was written by hand."""
    for name, digest in manifest.files.items():
        path = PurePosixPath(name)
        if (not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\0" in name
                or str(path) != name or name in (MANIFEST_FILE, SIGNATURE_FILE)):
            raise CheckFailed(f"manifest files: {name!r} is not a plain relative path of a file the manifest can list")
        if not is_sha256(digest):
            raise CheckFailed(f"manifest files[{name!r}]: {digest!r} is not a sha256 (64 lowercase hex digits)")
    for where, source_digest in (("model.weights_sha256", manifest.model.weights_sha256),
                                 ("calibration.sha256", manifest.calibration.sha256)):
        if source_digest is not None and not is_sha256(source_digest):
            raise CheckFailed(f"manifest {where}: {source_digest!r} is not a sha256 (64 lowercase hex digits)")
    names, classes = manifest.input.class_names, manifest.input.num_classes
    if classes < 0:  # 0 is the dataclass default: a count not recorded, which the model checks then refuse
        raise CheckFailed(f"manifest input.num_classes: {classes!r} is not a class count")
    if names and len(names) != classes:
        raise CheckFailed(f"manifest input names {len(names)} classes, but num_classes is {classes}")


@dataclass
class GoldenArrays:
    inputs: np.ndarray
    fp32_logits: np.ndarray
    int8_logits: np.ndarray
    labels: np.ndarray | None = None


def _load_array(folder: Path, name: str) -> np.ndarray:
    try:
        return np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CheckFailed(f"{name}: not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _golden_meta(folder: Path, manifest: Manifest) -> GoldenMeta:
    try:
        meta = read(GoldenMeta, folder / GOLDEN_META_FILE)
    except SchemaError as exc:
        raise CheckFailed(str(exc).replace(str(folder / GOLDEN_META_FILE), GOLDEN_META_FILE)) from None
    for key, stated, recorded in (("model", meta.model, manifest.model.name), ("target", meta.target, manifest.target.name)):
        if stated != recorded:
            raise CheckFailed(f"{GOLDEN_META_FILE} {key} is {stated!r}, but the manifest's is {recorded!r}")
    if meta.samples < 1:
        raise CheckFailed(f"{GOLDEN_META_FILE} samples: {meta.samples} is not a count")
    for role, name in vars(meta.files).items():
        if name is not None and f"{GOLDEN_FOLDER}/{name}" not in manifest.files:
            raise CheckFailed(f"{GOLDEN_META_FILE} files.{role}: {name!r} is not a file of the artifact's golden/")
    if len(meta.indices) != meta.samples or len(set(meta.indices)) != meta.samples or min(meta.indices) < 0:
        raise CheckFailed(f"{GOLDEN_META_FILE} indices: not {meta.samples} distinct evaluation-set indices")
    return meta


def check_golden(folder: Path, manifest: Manifest) -> tuple[GoldenMeta, GoldenArrays] | None:
    """golden.json against the arrays it names and the manifest's input; returns both (None: no golden/)."""
    if GOLDEN_META_FILE not in manifest.files:
        return None
    meta = _golden_meta(folder, manifest)
    samples, classes = meta.samples, manifest.input.num_classes
    shape = [samples, manifest.input.channels, *manifest.input.input_size]
    if meta.input.shape != shape or meta.input.dtype != "float32":
        raise CheckFailed(f"{GOLDEN_META_FILE} input is {meta.input.dtype} {meta.input.shape}, but "
                          f"{samples} inputs of the manifest's model are float32 {shape}")
    files = {role: name for role, name in vars(meta.files).items() if name is not None}
    golden = GoldenArrays(**{role: _load_array(folder / GOLDEN_FOLDER, name) for role, name in files.items()})
    expected: dict[str, tuple[str, tuple[int | None, ...]]] = {
        "inputs": ("float32", tuple(shape)), "fp32_logits": ("float32", (samples, classes)),
        "int8_logits": ("float32", (samples, classes)), "labels": ("int64", (samples,))}
    for role, array in vars(golden).items():
        if array is None:
            continue
        dtype, wanted = expected[role]
        if str(array.dtype) != dtype or array.shape != wanted:
            raise CheckFailed(f"{GOLDEN_FOLDER}/{files[role]} is {array.dtype} {list(array.shape)}, but "
                              f"{GOLDEN_META_FILE} and the manifest make it {dtype} {list(wanted)}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckFailed(f"{GOLDEN_FOLDER}/{files[role]} holds NaN or infinite values")
    labels = golden.labels
    if labels is not None:
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise CheckFailed(f"{GOLDEN_FOLDER}/{meta.files.labels}: labels outside 0..{classes - 1}")
        for kind, logits in (("fp32", golden.fp32_logits), ("int8", golden.int8_logits)):
            recorded, computed = meta.host_top1 and getattr(meta.host_top1, kind), metrics.top1(logits, labels)
            if recorded != computed:
                raise CheckFailed(f"{GOLDEN_META_FILE} host_top1.{kind} is {recorded!r}, but its logits and labels "
                                  f"give {computed}: golden/ was edited")
    return meta, golden


def _onnx_input(model: Any) -> tuple[str, int, list[int | str]]:
    initializers = {i.name for i in model.graph.initializer}
    graph_input = next((i for i in model.graph.input if i.name not in initializers), None)
    if graph_input is None:
        return "", 0, []
    tensor = graph_input.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return graph_input.name, tensor.elem_type, dims


def check_models(folder: Path, manifest: Manifest) -> list[str]:
    """Each listed ONNX model against the manifest's input and class count; returns the INT8 (Q/DQ) ones."""
    try:
        import onnx
    except ModuleNotFoundError:
        return []
    quantized = []
    for name in sorted(n for n in manifest.files if n.endswith(".onnx")):
        try:
            model = onnx.load(str(folder / name), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError, ValueError, ... on bytes that are not a model
            raise CheckFailed(f"{name}: not a readable ONNX model ({type(exc).__name__})") from None
        input_name, elem_type, dims = _onnx_input(model)
        shape = [manifest.input.channels, *manifest.input.input_size]
        if input_name != manifest.input.name or elem_type != onnx.TensorProto.FLOAT or dims[1:] != shape:
            raise CheckFailed(f"{name} takes {input_name!r} {onnx.helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else '?'} "
                              f"{dims}, but the manifest records {manifest.input.name!r} {manifest.input.dtype} [N, {', '.join(map(str, shape))}]")
        outputs = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
        if not outputs or outputs[0][-1:] != [manifest.input.num_classes]:
            raise CheckFailed(f"{name} outputs {outputs[0] if outputs else 'nothing'}, but the manifest's model has "
                              f"{manifest.input.num_classes} classes")
        qdq = sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)
        if name == FP32_MODEL_FILE and qdq:
            raise CheckFailed(f"{name} holds {qdq} quantize/dequantize nodes: not the FP32 model")
        if qdq:
            quantized.append(name)
    shipped = [n for n in manifest.target.files if n.endswith(".onnx")]
    if shipped and not set(shipped) & set(quantized):
        raise CheckFailed(f"none of the models the {manifest.target.name} target ships ({', '.join(shipped)}) holds "
                          "quantize/dequantize nodes: not an INT8 artifact")
    return quantized


def _optimized(runtime: str) -> bool:
    """Whether the golden logits' runtime ran with ONNX Runtime's graph optimizations (its label says so): re-run alike."""
    return "graph optimizations off" not in runtime


def rerun_models(folder: Path, manifest: Manifest, meta: GoldenMeta, golden: GoldenArrays,
                 quantized: list[str]) -> str:
    """The shipped ONNX models in ONNX Runtime on the first golden inputs, against the golden logits."""
    try:
        from edgeresnet.runners import OnnxRuntimeRunner
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError:
        return "not re-run (onnxruntime is not installed)"
    row_bytes = max(1, golden.inputs[0].nbytes)
    inputs = golden.inputs[:max(RERUN_MIN_ROWS, RERUN_INPUT_BYTES // row_bytes)]
    rows = len(inputs)
    models = sorted(n for n in manifest.files if n.endswith(".onnx"))
    for name in models:
        reference = (golden.int8_logits if name in quantized else golden.fp32_logits)[:rows]
        runtime = meta.int8_runtime if name in quantized else meta.fp32_runtime
        try:
            runner = OnnxRuntimeRunner(folder / name, optimize=_optimized(runtime), any_batch=True)
            logits = np.asarray(runner.infer(np.ascontiguousarray(inputs)), dtype=np.float32)
        except Exception as exc:  # onnxruntime's own exception types: a model it cannot load or run
            raise CheckFailed(f"{name}: ONNX Runtime cannot run it on the golden inputs "
                              f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
        if logits.shape != reference.shape or not np.isfinite(logits).all():
            raise CheckFailed(f"{name} gives {list(logits.shape)} logits on the golden inputs, not {list(reference.shape)}")
        if name == FP32_MODEL_FILE:
            worst = float(np.max(np.abs(logits - reference)))
            budget = FP32_TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
            if worst > budget:
                raise CheckFailed(f"{name} differs from {GOLDEN_FOLDER}'s FP32 logits by up to {worst:.4g} (budget {budget:.3g}): "
                                  "the model or the golden logits were changed")
            continue
        cosine, agreement = metrics.cosine(reference, logits), metrics.agreement(reference, logits)
        if cosine < MIN_COSINE or agreement < MIN_AGREEMENT or metrics.cosine_rows(reference, logits).min() < MIN_ROW_COSINE:
            kind = "INT8" if name in quantized else "FP32"
            raise CheckFailed(f"{name} does not compute {GOLDEN_FOLDER}'s {kind} logits (cosine {cosine:.4f}, top-1 agreement "
                              f"{agreement:.2f} on {len(inputs)} inputs): the model or the golden logits were changed")
    return f"{', '.join(models)} re-run on {len(inputs)} golden inputs" if models else "no ONNX model to re-run"


def cross_check(folder: Path, manifest: Manifest) -> str:
    """Every cross-check above; returns what was re-run (for `verify`'s result)."""
    check_manifest_fields(manifest)
    golden = check_golden(folder, manifest)
    quantized = check_models(folder, manifest)
    if golden is None:
        return "no golden vectors to re-run"
    return rerun_models(folder, manifest, *golden, quantized)
