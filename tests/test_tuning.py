"""`edgeresnet tune` through TVM's RPC tracker and a local RPC server (a device farm of one, on loopback),
and `compile --records` reusing what it stored.

Tuning measures every candidate, so speed is not asserted here (benchmarks/ does
that); what is asserted is the plumbing a board farm relies on: candidates built
here, uploaded and timed through the tracker, records written, and a later
compile taking its kernels' schedules from them with the same numerics.
"""

import json
import time

import pytest

from edgeresnet.targets.tvm.remote import RpcDevice
from edgeresnet.targets.tvm.records import DATABASE_FILES, SUMMARY_FILE
from helpers import run_cli

KEY = "edgeresnet-loopback"


@pytest.fixture(scope="module")
def device_farm():
    """A tracker and one RPC server registered under KEY, both on 127.0.0.1 (free ports)."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9390, silent=True)
    server = rpc.Server("127.0.0.1", port=9400, port_end=9600, key=KEY, tracker_addr=("127.0.0.1", tracker.port), silent=True)
    deadline = time.monotonic() + 60
    while KEY not in str(rpc.connect_tracker("127.0.0.1", tracker.port).summary().get("queue_info", {})):
        assert time.monotonic() < deadline, "the RPC server never registered with the tracker"
        time.sleep(0.5)
    yield RpcDevice(KEY, "127.0.0.1", tracker.port)
    server.terminate()
    tracker.terminate()


@pytest.fixture(scope="module")
def tuned(device_farm, tmp_path_factory):
    records = tmp_path_factory.mktemp("tuning") / "x86-64"
    result = run_cli("tune", "--target", "x86-64", "--records", str(records), "--rpc", str(device_farm),
                     "--kernels", "2", "--trials", "2", "--json", timeout=1500)
    assert result.returncode == 0, result.stderr
    return records, json.loads(result.stdout)


@pytest.mark.slow
def test_tune_through_the_rpc_tracker_writes_records(tuned, device_farm):
    records, summary = tuned
    assert summary["measured_on"] == str(device_farm)
    assert summary["tuned_kernels"] == 2 and summary["trials_per_kernel"] == 2
    for kernel in summary["kernels"]:
        assert "conv2d" in kernel["kernel"]
        # The rule schedule is measured first and is a record itself: the best can only be as fast or faster.
        assert kernel["rules_ms"] > 0 and 0 < kernel["best_ms"] <= kernel["rules_ms"]
        assert kernel["source"] in ("rules", "metaschedule")
    for name in (*DATABASE_FILES, SUMMARY_FILE):
        assert (records / name).stat().st_size > 0
    records_made = [json.loads(line) for line in (records / "database_tuning_record.json").read_text().splitlines()]
    assert len(records_made) >= 2 * 2  # per kernel: the rules' record and MetaSchedule's candidates
    stored = json.loads((records / SUMMARY_FILE).read_text())
    assert stored["target"] == "x86-64" and "edgeresnet tune --target x86-64" in stored["reproduce"]


@pytest.mark.slow
def test_compile_reuses_the_records(tuned, tmp_path):
    records, _ = tuned
    out = tmp_path / "tuned"
    result = run_cli("compile", "--target", "x86-64", "--records", str(records), "--eval-samples", "1000",
                     "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    details = report["target_details"]
    assert details["schedules"]["from_records"] == 2  # the two tuned kernels, the rest by the rules
    assert details["schedules"]["share"] == 1.0
    assert set(details["tuning_records"]["sha256"]) == set(DATABASE_FILES)
    assert report["drop_pts"] <= 0.3
    manifest = (out / "manifest.json").read_text()
    assert all(digest in manifest for digest in details["tuning_records"]["sha256"].values())


@pytest.mark.slow
def test_records_of_one_target_are_refused_by_another(tuned, tmp_path):
    records, _ = tuned
    for target in ("rpi5", "ort-cpu"):
        result = run_cli("compile", "--target", target, "--records", str(records), "--out", str(tmp_path / target))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / target).exists()


def test_tune_input_errors(tmp_path):
    cases = [
        (["--target", "rpi5"], "--rpc"),  # an aarch64 board cannot be measured here
        (["--target", "ort-cpu"], "which has no tuning; tunable targets: rpi4 (tvm)"),
        (["--target", "x86-64", "--rpc", "no-port@localhost"], "KEY@TRACKER_HOST:PORT"),
        (["--target", "x86-64", "--rpc", "k@127.0.0.1:1"], "no TVM RPC tracker"),
        (["--target", "x86-64", "--trials", "0"], "--trials"),
    ]
    for args, message in cases:
        result = run_cli("tune", "--records", str(tmp_path / "r"), *args, timeout=300)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "r").exists()


def test_compile_refuses_a_folder_that_is_not_records(tmp_path):
    (tmp_path / "notrecords").mkdir()
    result = run_cli("compile", "--target", "x86-64", "--records", str(tmp_path / "notrecords"), "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "not a tuning-records folder" in result.stderr
    assert not (tmp_path / "a").exists()
