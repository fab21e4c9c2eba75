"""report.html read in a real browser (Debian's Chromium through ChromeDriver), and the report's figures."""

from __future__ import annotations

import json
import re
import shutil

from browser import check_page
from helpers import compile_small, run_cli

from edgeresnet.report import render_html
from edgeresnet.report.compare import compare_artifacts
from edgeresnet.report.facts import class_losses, cycle_estimates, verdict, view
from edgeresnet.schema import Report, from_json

PAGE_SECTIONS = ("verdict", "accuracy", "ships", "speed", "calibration", "plots", "raw")
# The keys of `edgeresnet report A B ... --json`, documented in docs/commands.md.
COMPARISON_KEYS = {"schema", "out", "model", "weights_sha256", "evaluation", "golden_inputs", "agreement", "columns",
                   "class_names", "per_class_drop"}
COLUMN_KEYS = {"path", "target", "quant_profile", "method", "verdict", "ships", "warnings", "fp32_top1", "int8_top1",
               "int8_samples", "top1_standard_error_pts", "drop_pts", "drop_standard_error_pts", "agreement_with_fp32",
               "int8_runtime", "bytes", "files", "kept_in_float", "lost_most", "speed", "devices"}


def test_report_page_reads_cleanly_on_a_phone(ort_artifact):
    """No console error, every plot decoded, nothing fetched, no sideways scroll at 412 px, printable."""
    check = check_page(ort_artifact / "report.html", "report-ort-cpu-small")
    check.assert_ok()
    assert check.images == 4  # per-class accuracy, confusion difference, sensitivity, where the drift starts
    assert check.screenshot.stat().st_size > 10_000


def test_browser_check_fails_when_an_image_is_broken(ort_artifact, tmp_path):
    page = tmp_path / "report.html"
    html = (ort_artifact / "report.html").read_text()
    # Keep the data URI well formed but make its PNG undecodable.
    broken = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]{64}", "data:image/png;base64," + "A" * 64, html, count=1)
    assert broken != html
    page.write_text(broken)
    check = check_page(page, "report-broken-image")
    assert check.broken_images and any("image not loaded" in p for p in check.problems), check.problems
    try:
        check.assert_ok()
    except AssertionError:
        pass
    else:
        raise AssertionError("a page with a broken image passed the browser check")


def test_browser_check_fails_when_the_page_scrolls_sideways(ort_artifact, tmp_path):
    page = tmp_path / "report.html"
    page.write_text((ort_artifact / "report.html").read_text().replace("</body>", '<div style="width:900px">wide</div></body>'))
    check = check_page(page, "report-too-wide")
    assert any("scrolls sideways" in p for p in check.problems), check.problems


def test_report_page_shows_the_key_figures_where_a_reader_looks(ort_artifact):
    report = json.loads((ort_artifact / "report.json").read_text())
    check = check_page(ort_artifact / "report.html", "report-ort-cpu-figures", ids=PAGE_SECTIONS)
    check.assert_ok()
    verdict = check.texts["verdict"]
    assert f"INT8 top-1 {report['int8']['top1']:.2f}%" in verdict and f"{report['drop_pts']:+.2f} points" in verdict
    assert f"{report['int8']['samples']:,} images" in check.texts["accuracy"] and "±" in check.texts["accuracy"]
    assert "model.int8.onnx" in check.texts["ships"] and "quantizable layers run in INT8" in check.texts["ships"]
    assert "Not measured" in check.texts["speed"]  # nothing timed at compile time, no cycle model for ort-cpu
    assert report["method"] in check.texts["calibration"]


def test_few_classes_hide_top5_and_warnings_sit_beside_the_verdict(ort_artifact, tmp_path):
    """A 5-class model compiled with --allow-low-fp32: top-5 is always 100% there, and the warning is the news."""
    report = json.loads((ort_artifact / "report.json").read_text())
    report["class_names"] = ["a", "b", "c", "d", "e"]
    report["warnings"] = ["FP32 top-1 is near chance (20%): the preprocessing or labels may not fit the model"]
    page = tmp_path / "report.html"
    page.write_text(render_html(from_json(Report, report), folder=ort_artifact))
    check = check_page(page, "report-five-classes", ids=("verdict", "warnings", "accuracy"))
    check.assert_ok()
    assert "top-5" not in check.texts["accuracy"]
    assert "near chance" in check.texts["warnings"] and check.texts["verdict"].startswith("Ships, with warnings")
    html = page.read_text()
    assert html.index('id="warnings"') < html.index('id="accuracy"')  # before any figure, not in the raw JSON only


def test_a_missed_budget_says_it_does_not_ship(ort_artifact):
    report = json.loads((ort_artifact / "report.json").read_text())
    report["gate"] = {"max_drop": 0.01, "passed": False}
    decision = verdict(from_json(Report, report))
    assert not decision.ships and decision.tone == "fail" and "over the budget of 0.01 points" in decision.text


def test_cycle_model_rows_of_the_artifacts_board_and_size_are_shown_as_estimates(tmp_path):
    results = tmp_path / "arm_cost.json"
    rows = [{"model": "resnet20-fmnist", "board": "rpi5", "runtime": "tvm-int8", "threads": 1, "cycles": 1_380_000,
             "estimated_ms": 0.58, "ratio_vs_ort_int8": 0.53},
            {"model": "resnet20-fmnist", "board": "rpi4", "runtime": "tvm-int8", "threads": 1, "cycles": 4_610_000},
            {"model": "resnet20-fmnist", "board": "rpi5", "runtime": "ort-int8", "threads": 1, "cycles": 2_610_000},
            {"model": "resnet18", "board": "rpi5", "runtime": "tvm-int8", "threads": 4, "cycles": 64_000_000}]
    results.write_text(json.dumps(rows))
    (figure,) = cycle_estimates(view({"model": "resnet20-fmnist", "target": "rpi5"}), "resnet20", [28, 28], results)
    assert figure.estimate and figure.value == "1.38 M cycles, ~0.58 ms at the board's clock (0.53x ONNX Runtime INT8)"
    assert "not a board timing" in figure.source
    assert cycle_estimates(view({"model": "resnet20-fmnist", "target": "ort-cpu"}), "resnet20", [28, 28], results) == []
    # A user's ResNet-18 matches the architecture's row only at the size the cycle model counted it.
    user = view({"model": "resnet18", "target": "rpi5"})
    assert [f.what for f in cycle_estimates(user, "resnet18", [224, 224], results)] == ["cycle-model estimate, 4 threads"]
    assert cycle_estimates(view({"model": "resnet18", "target": "rpi5"}), "resnet18", [96, 96], results) == []


def test_report_compares_artifacts_of_one_model(ort_artifact, jetson_artifact, tmp_path):
    out = tmp_path / "compared"
    result = run_cli("report", str(ort_artifact), str(jetson_artifact), "--out", str(out), "--json", "--bench", "5")
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)
    assert set(comparison) == COMPARISON_KEYS
    assert comparison == {**json.loads((out / "report.json").read_text()), "out": str(out)}
    columns = comparison["columns"]
    assert [c["target"] for c in columns] == ["ort-cpu", "jetson-orin-nx"] and set(columns[0]) == COLUMN_KEYS
    for column, artifact in zip(columns, (ort_artifact, jetson_artifact)):
        report = json.loads((artifact / "report.json").read_text())
        assert column["int8_top1"] == report["int8"]["top1"] and column["drop_pts"] == report["drop_pts"]
        assert column["bytes"] == sum(p.stat().st_size for p in artifact.rglob("*")
                                      if p.is_file() and p.name not in ("report.json", "report.html", "manifest.json"))
    assert columns[0]["speed"] and columns[0]["speed"][0]["estimate"] is False  # ONNX Runtime runs here: timed
    golden = json.loads((ort_artifact / "golden" / "golden.json").read_text())
    assert comparison["golden_inputs"] == golden["samples"]
    matrix = comparison["agreement"]
    assert matrix[0][0] == matrix[1][1] == 1.0 and matrix[0][1] == matrix[1][0] and 0.0 <= matrix[0][1] <= 1.0
    check = check_page(out / "report.html", "report-compared", ids=("verdict", "comparison-table", "golden-agreement", "plots"))
    check.assert_ok()
    assert "ort-cpu" in check.texts["comparison-table"] and "jetson-orin-nx" in check.texts["comparison-table"]


def test_report_refuses_artifacts_of_another_evaluation_set(ort_artifact, small_data, tmp_path):
    other = tmp_path / "fewer"
    assert compile_small("ort-cpu", other, small_data, "--eval-samples", "32").returncode == 0
    result = run_cli("report", str(ort_artifact), str(other), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "different evaluation set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    misuse = run_cli("report", str(ort_artifact), str(other), "--device", str(tmp_path / "device.json"))
    assert misuse.returncode == 2 and "one artifact" in misuse.stderr


def test_comparison_takes_device_columns_from_the_artifacts_device_folder(ort_artifact, tmp_path):
    artifact = tmp_path / "ort"
    shutil.copytree(ort_artifact, artifact)
    combined = json.loads((artifact / "report.json").read_text())
    combined["devices"] = [{"label": "pi under qemu", "file": "device/pi-under-qemu.json", "samples": 64, "passed": True, "verdict": "PASS", "host_agreement": 1.0,
                            "int8": {"top1": 12.5, "runtime": "onnxruntime 1.20.1 aarch64 (qemu emulation)"},
                            "device": {"machine": "aarch64"}}]
    (tmp_path / "ort.device").mkdir()
    (tmp_path / "ort.device" / "report.json").write_text(json.dumps(combined))
    (column,) = compare_artifacts([artifact]).columns
    (device,) = column.devices
    assert device.label == "pi under qemu" and device.emulated and device.top1 == 12.5 and device.verdict == "PASS"
    assert compare_artifacts([ort_artifact]).columns[0].devices == []


def test_a_class_without_evaluation_images_is_left_out_of_losses_and_plots(ort_artifact, tmp_path):
    report = json.loads((ort_artifact / "report.json").read_text())
    for row in ("fp32", "int8"):
        report[row]["per_class"][3] = None
    page = tmp_path / "report.html"
    page.write_text(render_html(from_json(Report, report), folder=ort_artifact))
    assert all(loss.name != report["class_names"][3] for loss in class_losses(from_json(Report, report), count=10))
    assert "Per-class top-1 accuracy" in page.read_text()
