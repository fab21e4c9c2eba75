"""What an artifact says, typed: report.json, manifest.json, a device report, and the file names they live in.

Every consumer reads and builds these dataclasses by attribute; `mapping` alone maps them to and from JSON.
Nested mappings a backend or a device fills freely stay `dict[str, Any]`. Each document carries its schema
(name/version) and is refused on read when the schema is another one. The package imports nothing but the
standard library, so the light commands (verify) stay light.
"""

from edgeresnet.schema.details import (BUILD_DETAILS, BuildDetails, OnnxRuntimeDetails, OtherDetails, TensorRtDetails,
                                       TvmDetails, build_details, details_class)
from edgeresnet.schema.device import DeviceColumn, DeviceFacts, DeviceReport, DeviceRun
from edgeresnet.schema.files import (DEVICE_REPORT_FILE, DEVICE_REPORT_SCHEMA, DIGEST_SUFFIX, FP32_MODEL_FILE, GOLDEN_FOLDER,
                                     GOLDEN_META_FILE, GOLDEN_SCHEMA, MANIFEST_FILE, MANIFEST_SCHEMA, MODEL_CARD_FILE, REPORT_FILE,
                                     REPORT_HTML, REPORT_SCHEMA, SIGNATURE_FILE)
from edgeresnet.schema.golden import GoldenFiles, GoldenInput, GoldenMeta, HostTop1
from edgeresnet.schema.manifest import (AccuracyRecord, CalibrationRecordEntry, DeviceConfig, InputRecord, Manifest,
                                        ModelRecord, TargetRecord)
from edgeresnet.schema.mapping import (SchemaError, dumps, expected_schema, from_json, loads, parse, read, schema_of, to_json,
                                       write)
from edgeresnet.schema.measures import DeviceDrift, Drift, Gate, Stability
from edgeresnet.schema.quant_records import BiasShiftRecord, CandidateRecord, ClippedSpikeRecord, LayerDriftRecord
from edgeresnet.schema.report import (ArtifactRef, CalibrationSummary, Confusion, DataSummary, FallbackStep, LayerSensitivity,
                                      ModelSummary, PytorchAgreement, Report, RunnerResult)

__all__ = [
    "BUILD_DETAILS", "BuildDetails", "OnnxRuntimeDetails", "OtherDetails", "TensorRtDetails", "TvmDetails", "build_details",
    "details_class",
    "DeviceColumn", "DeviceFacts", "DeviceReport", "DeviceRun",
    "DEVICE_REPORT_FILE", "DEVICE_REPORT_SCHEMA", "DIGEST_SUFFIX", "FP32_MODEL_FILE", "GOLDEN_FOLDER", "MANIFEST_FILE",
    "MANIFEST_SCHEMA", "MODEL_CARD_FILE", "REPORT_FILE", "REPORT_HTML", "REPORT_SCHEMA", "SIGNATURE_FILE", "GOLDEN_META_FILE",
    "GOLDEN_SCHEMA", "GoldenFiles", "GoldenInput", "GoldenMeta", "HostTop1",
    "AccuracyRecord", "CalibrationRecordEntry", "DeviceConfig", "InputRecord", "Manifest", "ModelRecord", "TargetRecord",
    "SchemaError", "dumps", "expected_schema", "from_json", "loads", "parse", "read", "schema_of", "to_json", "write",
    "DeviceDrift", "Drift", "Gate", "Stability",
    "BiasShiftRecord", "CandidateRecord", "ClippedSpikeRecord", "LayerDriftRecord",
    "ArtifactRef", "CalibrationSummary", "Confusion", "DataSummary", "FallbackStep", "LayerSensitivity", "ModelSummary",
    "PytorchAgreement", "Report", "RunnerResult",
]
