"""device-report.json (written on the device by targets/templates/device_check.py; read here) and a device's
column beside the host's in a combined report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeresnet.schema.files import DEVICE_REPORT_SCHEMA
from edgeresnet.schema.mapping import omit_none, spread
from edgeresnet.schema.measures import DeviceDrift


@dataclass
class DeviceFacts:
    """What the device is (device_check.device_facts), or the device farm a validation ran on."""

    machine: str | None = omit_none()
    cpu_model: str | None = omit_none()
    cpu_count: int | None = omit_none()
    board: str | None = omit_none()
    kernel: str | None = omit_none()
    l4t_release: str | None = omit_none()
    power_mode: str | None = omit_none()
    python: str | None = omit_none()
    numpy: str | None = omit_none()
    rpc: str | None = omit_none()
    boards: int | None = omit_none()
    servers: list[str] | None = omit_none()
    runtime: dict[str, Any] = field(default_factory=dict)
    rest: dict[str, Any] = spread()


@dataclass
class DeviceRun:
    """One runtime's figures in a device report (the device's INT8, the host's INT8, FP32)."""

    runtime: str
    arch: str | None = omit_none()
    samples: int = 0
    top1: float | None = omit_none()


@dataclass(kw_only=True)
class DeviceReport:
    """Fields in the order device_check.py writes them."""

    schema: str = DEVICE_REPORT_SCHEMA
    source: str
    samples: int
    device: DeviceFacts
    int8: DeviceRun
    latency_ms: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    note: str | None = omit_none()  # no host references for the inputs: accuracy only
    model: str | None = omit_none()
    target: str | None = omit_none()
    fp32: DeviceRun | None = omit_none()
    host_int8: DeviceRun | None = omit_none()
    drop_pts: float | None = omit_none()
    agreement: float | None = omit_none()
    drift: DeviceDrift | None = omit_none()
    host_drop_pts: float | None = omit_none()
    host_agreement: float | None = omit_none()
    host_drift: DeviceDrift | None = omit_none()
    passed: bool
    reasons: list[str] = field(default_factory=list)
    verdict: str = ""
    manifest_sha256: str | None = omit_none()  # of the artifact whose golden/ was run, when it sat in one


@dataclass
class DeviceColumn:
    """One device's measurement beside the host's in a combined report."""

    label: str
    file: str  # the device report's copy, relative to the combined report's folder
    device: DeviceFacts
    source: str | None = omit_none()
    samples: int | None = omit_none()
    int8: DeviceRun | None = omit_none()
    fp32: DeviceRun | None = omit_none()
    host_int8: DeviceRun | None = omit_none()
    drop_pts: float | None = omit_none()
    agreement: float | None = omit_none()
    drift: DeviceDrift | None = omit_none()
    host_drop_pts: float | None = omit_none()
    host_agreement: float | None = omit_none()
    host_drift: DeviceDrift | None = omit_none()
    latency_ms: dict[str, Any] | None = omit_none()
    budget: dict[str, Any] | None = omit_none()
    passed: bool | None = omit_none()
    verdict: str | None = omit_none()
    reasons: list[str] | None = omit_none()
    note: str | None = omit_none()
